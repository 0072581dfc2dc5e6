"""Supervised fine-tuning with TRL's SFTTrainer: full or LoRA (PEFT), packing on or off.

Loss is on assistant tokens only by default (TRL's `assistant_only_loss`, driven by the {% generation %}
markers of babyllama's chat template, which include the closing <|end|> so the model learns to stop).
Packing uses TRL's best-fit-decreasing packing in padding-free form: packed examples carry their own position ids,
from which transformers builds a block-diagonal mask, so examples never attend to each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from babyllama.tune.publish import publish, take_push_request


def lora_config(tune, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    targets = tune.lora_target_modules
    target = targets[0] if len(targets) == 1 and targets[0] == "all-linear" else list(targets)
    return LoraConfig(r=tune.lora_r, lora_alpha=tune.lora_alpha, lora_dropout=tune.lora_dropout,
                      target_modules=target, bias="none", task_type=task_type)


def fit_max_length(config, model, log: Callable[[str], None]) -> None:
    """max_length beyond the model's context would train positions it was never built for."""
    context = getattr(model.config, "max_position_embeddings", None)
    if context and (config.max_length is None or config.max_length > context):
        log(f"max_length {config.max_length} -> {context} (the model's context)")
        config.max_length = context


def prepare_run_folder(kind: str, tune, config, model_folder: Path, extra: dict):
    from babyllama.tune.hfmodel import parent_run
    from babyllama.tune.record import start_record

    record, run_name = start_record(kind, tune, config, parent_run(model_folder), extra)
    # The Trainer's own checkpoints (checkpoint-N) live inside the run folder.
    config.output_dir = str(record.folder / "checkpoints")
    config.run_name = run_name
    return record


def run_sft(tune, config, log: Callable[[str], None] = print) -> Path:
    """Fine-tune and return the run folder."""
    push = take_push_request(config)  # checked now; carried out when the run has finished
    import datasets
    from trl import SFTTrainer

    from babyllama.tune.data import read_records, split_examples, to_sft_examples
    from babyllama.tune.hfmodel import load_hf_model, load_tokenizer, save_final
    from babyllama.tune.labels import check_report, label_report
    from babyllama.tune.record import metrics_callback

    records = read_records(tune.data, tune.data_split)
    if tune.max_examples:
        records = records[:tune.max_examples]
    examples, fmt = to_sft_examples(records, tune.system_prompt)
    train, held = split_examples(examples, tune.eval_size, config.seed)

    model, model_folder = load_hf_model(tune.model)
    tokenizer = load_tokenizer(model_folder, config.chat_template_path)
    config.chat_template_path = None  # applied above; TRL would otherwise re-read it
    fit_max_length(config, model, log)
    if fmt == "text":
        config.assistant_only_loss = False  # plain text has no assistant turns: every token is trained
    report = label_report(tokenizer, train, config.assistant_only_loss, config.max_length)
    if report.truncated_answer and getattr(tune, "drop_truncated", False):
        cut = set(report.truncated_answer)
        train = [example for index, example in enumerate(train) if index not in cut]
        log(f"dropped {len(cut)} example(s) whose answer max_length {config.max_length} would cut off "
            f"(--drop_truncated); {len(train)} remain")
        report = label_report(tokenizer, train, config.assistant_only_loss, config.max_length)
    log(report.summary())
    check_report(report, getattr(model.config, "max_position_embeddings", None), tune.model)

    record = prepare_run_folder("sft", tune, config, model_folder, {
        "data": {"source": tune.data, "format": fmt, "train_examples": len(train), "eval_examples": len(held)},
        "label_report": report.as_dict(), "lora": tune.lora})
    with record:  # from here on, however training ends, the run record says so
        log(record.arguments_text())
        trainer = SFTTrainer(
            model=model, args=config, processing_class=tokenizer,
            train_dataset=datasets.Dataset.from_list(train),
            eval_dataset=datasets.Dataset.from_list(held) if held else None,
            peft_config=lora_config(tune) if tune.lora else None,
            callbacks=[metrics_callback(record, tune.max_time)])
        if tune.lora:
            trainable, total = trainer.model.get_nb_trainable_parameters()
            log(f"LoRA: {trainable:,} trainable of {total:,} parameters")
        result = trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
        final = dict(result.metrics)
        if held:
            final.update(trainer.evaluate())
        out = save_final(trainer.model, tokenizer, record.folder)
        log(f"saved {out}")
        record.update(final_metrics=final)
    publish(record.folder, tune.license, push, log)
    return record.folder
