"""Preference tuning with TRL's DPOTrainer, and the held-out numbers that say whether it worked.

Before and after training, on the held-out pairs:
  preference accuracy   share of pairs where the model gives the chosen answer a higher log-probability than the
                        rejected one (meaningful before training too)
  reward accuracy/margin  DPO's implicit reward, beta * (log pi(y|x) - log pi_ref(y|x)), chosen minus rejected;
                        the reference is the starting model, so before training every margin is 0 by definition
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from babyllama.tune.publish import publish, take_push_request


def completion_logps(model, tokenizer, pairs: list[dict], batch_size: int = 8) -> torch.Tensor:
    """(pairs, 2) summed log-probabilities of the chosen and rejected answers (with their <|end|>)."""
    device = next(model.parameters()).device
    rows = []  # (ids, first completion index)
    for pair in pairs:
        prompt = tokenizer.apply_chat_template(pair["prompt"], tokenize=True, add_generation_prompt=True,
                                               return_dict=True)["input_ids"]
        for answer in (pair["chosen"], pair["rejected"]):
            full = tokenizer.apply_chat_template(pair["prompt"] + answer, tokenize=True, return_dict=True)["input_ids"]
            rows.append((list(full), len(prompt)))
    context = getattr(model.config, "max_position_embeddings", None)
    out = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            chunk = [(ids[:context] if context else ids, first) for ids, first in chunk]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, (tokens, _) in enumerate(chunk):
                ids[row, :len(tokens)] = torch.tensor(tokens)
                mask[row, :len(tokens)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(device)).squeeze(-1)
            for row, (tokens, first) in enumerate(chunk):
                out.append(logps[row, first - 1:len(tokens) - 1].sum().item())
    model.train(was_training)
    return torch.tensor(out).view(-1, 2)


def preference_metrics(policy: torch.Tensor, reference: torch.Tensor, beta: float) -> dict:
    margins = beta * ((policy[:, 0] - reference[:, 0]) - (policy[:, 1] - reference[:, 1]))
    return {"pairs": int(policy.shape[0]),
            "preference_accuracy": float((policy[:, 0] > policy[:, 1]).float().mean()),
            "reward_accuracy": float((margins > 0).float().mean()),
            "reward_margin": float(margins.mean())}


def run_dpo(tune, config, log: Callable[[str], None] = print) -> Path:
    push = take_push_request(config)  # checked now; carried out when the run has finished
    import datasets
    from trl import DPOTrainer

    from babyllama.errors import BabyLlamaError
    from babyllama.tune.data import read_records, split_examples, to_preference_examples
    from babyllama.tune.hfmodel import load_hf_model, load_tokenizer, save_final
    from babyllama.tune.record import metrics_callback
    from babyllama.tune.sft import fit_max_length, lora_config, prepare_run_folder

    records = read_records(tune.data, tune.data_split)
    if tune.max_examples:
        records = records[:tune.max_examples]
    pairs, identical = to_preference_examples(records, tune.system_prompt)
    if identical:
        log(f"dropped {identical} pair(s) whose chosen and rejected answers are identical")
    train, held = split_examples(pairs, tune.eval_size, config.seed)
    if not held:
        raise BabyLlamaError("DPO reports preference accuracy on held-out pairs: set --eval_size above 0")
    model, model_folder = load_hf_model(tune.model)
    tokenizer = load_tokenizer(model_folder)
    fit_max_length(config, model, log)

    reference = completion_logps(model, tokenizer, held, config.per_device_eval_batch_size)
    before = preference_metrics(reference, reference, config.beta)
    log(f"held-out before: preference accuracy {before['preference_accuracy']:.3f} on {before['pairs']} pairs")
    record = prepare_run_folder("dpo", tune, config, model_folder, {
        "data": {"source": tune.data, "train_pairs": len(train), "eval_pairs": len(held),
                 "identical_pairs_dropped": identical}, "lora": tune.lora, "preference_before": before})
    with record:  # from here on, however training ends, the run record says so
        log(record.arguments_text())
        trainer = DPOTrainer(model=model, args=config, processing_class=tokenizer,
                             train_dataset=datasets.Dataset.from_list(train),
                             eval_dataset=datasets.Dataset.from_list(held),
                             peft_config=lora_config(tune) if tune.lora else None,
                             callbacks=[metrics_callback(record, tune.max_time)])
        result = trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
        after = preference_metrics(completion_logps(trainer.model, tokenizer, held, config.per_device_eval_batch_size),
                                   reference, config.beta)
        log(f"held-out after: preference accuracy {after['preference_accuracy']:.3f}, reward accuracy "
            f"{after['reward_accuracy']:.3f}, reward margin {after['reward_margin']:.4f}")
        record.log_metrics({"step": trainer.state.global_step, "split": "heldout", **{
            f"before/{k}": v for k, v in before.items()}, **{f"after/{k}": v for k, v in after.items()}})
        out = save_final(trainer.model, tokenizer, record.folder)
        log(f"saved {out}")
        record.update(final_metrics=dict(result.metrics), preference_before=before, preference_after=after)
    publish(record.folder, tune.license, push, log)
    return record.folder
