"""Reinforcement learning with a verifiable reward: TRL's GRPOTrainer, rewarded by the words metric.

The data are words prompts (from `babyllama prepare-sft`: 'instruction' and 'words'). For each prompt the policy
writes `num_generations` stories; each story's reward is the share of requested words it uses (evals/word_match.py, the
same score `eval --task words` reports), and GRPO pushes up the stories that beat their group's mean. Generation
stops at the end-of-turn token, as in chat. Run records, --max_time, LoRA and resume are the ones of sft and dpo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from babyllama.tune.publish import publish, take_push_request
from babyllama.errors import BabyLlamaError


def words_reward(completions, words, **kwargs) -> list[float]:
    """Share of the requested words each completion uses (GRPOTrainer passes the dataset's 'words' column)."""
    from babyllama.evals.word_match import score

    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [score(list(w), text) for text, w in zip(texts, words)]


def to_prompts(records: list[dict], system_prompt=None) -> list[dict]:
    out = []
    for index, record in enumerate(records):
        words, instruction = record.get("words"), record.get("instruction") or record.get("prompt")
        if not isinstance(words, list) or not words or not isinstance(instruction, str) or not instruction.strip():
            raise BabyLlamaError(f"record {index}: a GRPO words prompt needs 'instruction' and a non-empty 'words' "
                                 f"list (make them with `babyllama prepare-sft`)")
        prompt = [{"role": "user", "content": instruction}]
        if system_prompt:
            prompt = [{"role": "system", "content": system_prompt}] + prompt
        out.append({"prompt": prompt, "words": [str(w) for w in words]})
    if not out:
        raise BabyLlamaError("the data holds no words prompt")
    return out


def fit_completion_length(config, tokenizer, prompts: list[dict], context: int, log) -> None:
    """Prompt plus completion must fit the model's context."""
    longest = max(len(tokenizer.apply_chat_template(p["prompt"], tokenize=True, add_generation_prompt=True,
                                                    return_dict=True)["input_ids"]) for p in prompts)
    room = context - longest
    if room <= 0:
        raise BabyLlamaError(f"the longest prompt is {longest} tokens; the model's context is {context}")
    if config.max_completion_length is None or config.max_completion_length > room:
        log(f"max_completion_length {config.max_completion_length} -> {room} (context {context} - longest prompt "
            f"{longest})")
        config.max_completion_length = room


def run_grpo(tune, config, log: Callable[[str], None] = print) -> Path:
    push = take_push_request(config)  # checked now; carried out when the run has finished
    import datasets
    from trl import GRPOTrainer

    from babyllama.tune.data import read_records, split_examples
    from babyllama.tune.hfmodel import load_hf_model, load_tokenizer, save_final
    from babyllama.tune.record import metrics_callback
    from babyllama.tune.sft import lora_config, prepare_run_folder

    records = read_records(tune.data, tune.data_split)
    if tune.max_examples:
        records = records[:tune.max_examples]
    prompts = to_prompts(records, tune.system_prompt)
    train, held = split_examples(prompts, tune.eval_size, config.seed)
    model, model_folder = load_hf_model(tune.model)
    tokenizer = load_tokenizer(model_folder)
    end_id = tokenizer.convert_tokens_to_ids("<|end|>")
    if end_id is not None and end_id != tokenizer.unk_token_id:  # stop each story at the end of its turn
        model.generation_config.eos_token_id = [tokenizer.eos_token_id, end_id]
    fit_completion_length(config, tokenizer, prompts, int(getattr(model.config, "max_position_embeddings", 2048)),
                          log)
    record = prepare_run_folder("grpo", tune, config, model_folder, {
        "data": {"source": tune.data, "train_prompts": len(train), "eval_prompts": len(held)},
        "reward": "words: share of the requested words the story uses", "lora": tune.lora})
    with record:  # from here on, however training ends, the run record says so
        log(record.arguments_text())
        trainer = GRPOTrainer(model=model, reward_funcs=[words_reward], args=config, processing_class=tokenizer,
                              train_dataset=datasets.Dataset.from_list(train),
                              eval_dataset=datasets.Dataset.from_list(held) if held else None,
                              peft_config=lora_config(tune) if tune.lora else None,
                              callbacks=[metrics_callback(record, tune.max_time)])
        result = trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
        final = dict(result.metrics)
        rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
        if rewards:
            final.update(first_logged_reward=rewards[0], last_logged_reward=rewards[-1])
        out = save_final(trainer.model, tokenizer, record.folder)
        record.update(final_metrics=final)
        log(f"saved {out}")
    publish(record.folder, tune.license, push, log)
    return record.folder
