"""Fine-tuning: argument parsing, label masking, packing, SFT (LoRA + full), merge/export/chat, DPO, words task.

All on the tiny pretrained run of conftest.py, a few optimizer steps each.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
import torch

from babyllama.errors import BabyLlamaError

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--max_steps", "2", "--per_device_train_batch_size", "4", "--logging_steps", "1", "--disable_tqdm", "true",
         "--dataloader_pin_memory", "false"]


def cli(*argv):
    from babyllama.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    return exit_info.value.code


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_run):
    from babyllama.tune.hfmodel import load_tokenizer

    return load_tokenizer(tiny_run / "model")


# --------------------------------------------------------------------------- arguments


def test_records_yaml_parses_and_command_line_wins():
    from babyllama.tune.args import parse_tune_args

    tune, config = parse_tune_args("sft", ["--config", str(REPO / "configs" / "sft-records.yaml"), "--model", "m",
                                           "--data", "d", "--weight_decay", "0.01"])
    assert tune.lora and tune.lora_r == 16 and config.packing
    assert config.learning_rate == 1e-5 and config.lr_scheduler_type.value == "cosine"
    assert config.warmup_steps == 0.03 and config.max_grad_norm == 0.3 and config.logging_steps == 1
    assert config.train_sampling_strategy == "group_by_length"
    assert config.weight_decay == 0.01  # the flag overrides the file
    assert config.assistant_only_loss and not config.gradient_checkpointing  # babyllama's defaults


def test_any_library_field_and_bad_values(tmp_path):
    from babyllama.tune.args import device_precision, parse_tune_args

    _, config = parse_tune_args("sft", ["--model", "m", "--data", "d", "--lr_scheduler_type", "cosine",
                                        "--max_grad_norm", "0.3", "--neftune_noise_alpha", "5", "--max_length", "64"])
    assert config.neftune_noise_alpha == 5 and config.max_length == 64
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 0.1\n")
    with pytest.raises(BabyLlamaError, match='learning_rat.*did you mean "learning_rate"'):
        parse_tune_args("sft", ["--config", str(bad), "--model", "m", "--data", "d"])
    if not torch.cuda.is_available():
        with pytest.raises(BabyLlamaError, match=r"optim=paged_adamw_8bit.*CUDA.*--optim adamw_torch"):
            parse_tune_args("sft", ["--model", "m", "--data", "d", "--optim", "paged_adamw_8bit"])
        if not device_precision()["bf16"]:
            with pytest.raises(BabyLlamaError, match=r"bf16=true.*--bf16 false"):
                parse_tune_args("dpo", ["--model", "m", "--data", "d", "--bf16", "true"])
    with pytest.raises(SystemExit):  # argparse's own error for a value of the wrong type
        parse_tune_args("sft", ["--model", "m", "--data", "d", "--learning_rate", "fast"])


def test_data_formats(tmp_path):
    from babyllama.tune.data import read_records, to_preference_examples, to_sft_examples

    examples, kind = to_sft_examples([{"instruction": "Add.", "input": "1+1", "output": "2"}], "Be brief.")
    assert kind == "conversational" and examples[0]["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add.\n\n1+1"},
        {"role": "assistant", "content": "2"}]
    examples, _ = to_sft_examples([{"prompt": "Hi", "completion": "Hello"}])
    assert examples[0]["messages"][1] == {"role": "assistant", "content": "Hello"}
    assert to_sft_examples([{"text": "Once upon a time."}])[1] == "text"
    with pytest.raises(BabyLlamaError, match="no assistant turn"):
        to_sft_examples([{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(BabyLlamaError, match="one format"):
        to_sft_examples([{"text": "a"}, {"prompt": "b", "completion": "c"}])
    pairs, identical = to_preference_examples([{"instruction": "Q", "chosen": "a", "rejected": "b"},
                                               {"instruction": "Q", "chosen": "a", "rejected": "a"}])
    assert identical == 1 and pairs[0]["prompt"] == [{"role": "user", "content": "Q"}]
    with pytest.raises(BabyLlamaError, match="Hub cannot be reached|not a local file"):
        read_records("nobody-here/no-such-dataset-xyz")


# --------------------------------------------------------------------------- labels and packing


def test_only_assistant_tokens_and_end_of_turn_are_trained(tiny_run, hf_tokenizer, tmp_path):
    from babyllama.tune.labels import check_report, example_labels, label_report

    example = {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there!"}]}
    ids, trained, truncated = example_labels(hf_tokenizer, example, assistant_only=True, max_length=None)
    assert not truncated
    assert hf_tokenizer.decode([i for i, t in zip(ids, trained) if t]) == "Hi there!<|end|>"
    assert ids[0] == hf_tokenizer.bos_token_id and "<|user|>" in hf_tokenizer.decode(ids)
    # the answer cut by max_length is a hard error, as is an example with nothing to train
    report = label_report(hf_tokenizer, [example], assistant_only=True, max_length=len(ids) - 1)
    assert report.truncated_answer == [0]
    with pytest.raises(BabyLlamaError, match="cut off by max_length"):
        check_report(report)
    report = label_report(hf_tokenizer, [example], assistant_only=True, max_length=3)
    assert report.no_trained_token == [0]
    with pytest.raises(BabyLlamaError, match="no trained token"):
        check_report(report)
    # TRL's own dataset preparation, with babyllama's defaults, labels exactly the same tokens
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    from babyllama.tune.args import parse_tune_args

    _, config = parse_tune_args("sft", ["--model", "m", "--data", "d", "--output_dir", str(tmp_path),
                                        "--dataloader_pin_memory", "false"])
    model = AutoModelForCausalLM.from_pretrained(str(tiny_run / "model"), dtype=torch.float32)
    trainer = SFTTrainer(model=model, args=config, processing_class=hf_tokenizer,
                         train_dataset=datasets.Dataset.from_list([example]))
    row = trainer.train_dataset[0]
    assert row["input_ids"] == ids
    assert hf_tokenizer.decode([label for label in row["labels"] if label != -100]) == "Hi there!<|end|>"


def test_packed_examples_do_not_attend_to_each_other(tiny_run, hf_tokenizer):
    import datasets
    from transformers import AutoModelForCausalLM
    from trl.data_utils import pack_dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(str(tiny_run / "model"), dtype=torch.float32).eval()
    texts = ["Once upon a time there was a cat.", "Tom had a red ball.", "The sun was warm and bright today."]
    rows = [{"input_ids": hf_tokenizer(t)["input_ids"]} for t in texts]
    packed = pack_dataset(datasets.Dataset.from_list(rows), seq_length=64, strategy="bfd")
    assert len(packed) == 1  # all three share one row
    batch = DataCollatorForLanguageModeling(pad_token_id=hf_tokenizer.pad_token_id, padding_free=True)(list(packed))
    assert "attention_mask" not in batch
    with torch.no_grad():
        # as SFTTrainer.compute_loss calls the model: the collated batch, use_cache=False
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs, use_cache=False).logits[0]
        row, start = batch["input_ids"][0].tolist(), 0
        for length in packed[0]["seq_lengths"]:
            alone = model(input_ids=torch.tensor([row[start:start + length]])).logits[0]
            torch.testing.assert_close(logits[start:start + length], alone, rtol=1e-4, atol=1e-4)
            start += length
        # and without the position ids, attention would cross: the check above can fail
        crossed = model(input_ids=batch["input_ids"]).logits[0]
        last = packed[0]["seq_lengths"][-1]
        assert not torch.allclose(crossed[-last:], logits[-last:], atol=1e-4)


# --------------------------------------------------------------------------- end to end


def test_lora_sft_merge_export_chat(tiny_run, data_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from babyllama.modelio import load_model
    from babyllama.tune.hfmodel import load_hf_model

    data = data_dir / "instruct" / "instructions.jsonl"
    assert cli("sft", "--model", tiny_run, "--data", data, "--output_dir", tmp_path, "--run_name", "lora",
               "--lora", "--lora_r", "4", "--lora_alpha", "8", "--max_examples", "24", "--eval_size", "4",
               "--learning_rate", "1e-2", "--hub_token", "hf_secretsecretsecret123", "--save_strategy", "steps",
               "--save_steps", "1", *QUICK) == 0
    run = tmp_path / "lora"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["kind"] == "sft"
    assert Path(manifest["parent"]) == tiny_run.resolve()
    assert manifest["label_report"]["assistant_only_loss"] and manifest["label_report"]["trained_tokens"] > 0
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()][:2] == [1, 2]
    everything = (run / "manifest.json").read_text() + (run / "arguments.txt").read_text()
    assert "hf_secretsecretsecret123" not in everything and "<HUB_TOKEN>" in everything
    assert "learning_rate=0.01" in (run / "arguments.txt").read_text()
    assert (run / "adapter" / "adapter_config.json").is_file()

    # the merged model/ equals base + adapter, and differs from the base
    merged, _ = load_hf_model(run / "model")
    via_adapter, _ = load_hf_model(run / "adapter")
    base, _ = load_hf_model(tiny_run)
    ids = torch.tensor([[1, 40, 50, 60, 70]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, via_adapter(ids).logits, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(merged(ids).logits, base(ids).logits, atol=1e-4)

    # export -> transformers loads it; babyllama's own model gives the same logits
    assert cli("export", "--model", run, "--format", "hf", "--out", tmp_path / "exported") == 0
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "exported"), dtype=torch.float32)
    ours, _, _ = load_model(tmp_path / "exported")
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids), rtol=1e-4, atol=1e-4)

    # a mid-run checkpoint holds only the adapter: export merges it into its base; the last one is the final model
    checkpoint = run / "checkpoints" / "checkpoint-2"
    assert (checkpoint / "adapter_config.json").is_file() and not (checkpoint / "config.json").is_file()
    assert cli("export", "--model", checkpoint, "--format", "hf", "--out", tmp_path / "from_checkpoint") == 0
    from_checkpoint, _, _ = load_model(tmp_path / "from_checkpoint")
    with torch.no_grad():
        torch.testing.assert_close(from_checkpoint(ids), merged(ids).logits, rtol=1e-4, atol=1e-4)
    # a run interrupted before its final model: the run folder means its newest checkpoint-N
    interrupted = tmp_path / "interrupted"
    shutil.copytree(run, interrupted, ignore=shutil.ignore_patterns("model", "adapter"))
    (interrupted / "checkpoints" / "checkpoint-1").rename(interrupted / "checkpoints" / "checkpoint-10")
    (interrupted / "checkpoints" / "checkpoint-2").rename(interrupted / "checkpoints" / "checkpoint-9")
    newest, _, folder = load_model(interrupted)
    assert folder == interrupted / "checkpoints" / "checkpoint-10"  # by number, not by name
    first, _, _ = load_model(run / "checkpoints" / "checkpoint-1")
    with torch.no_grad():
        torch.testing.assert_close(newest(ids), first(ids), rtol=0, atol=0)

    capsys.readouterr()
    assert cli("chat", "--model", run, "--message", "Say hi.", "--max_new_tokens", "8") == 0
    out = capsys.readouterr().out
    assert "user: Say hi." in out and "assistant:" in out


def test_full_sft_with_packing_card_and_push_to_hub(tiny_run, data_dir, tmp_path, monkeypatch):
    """--push_to_hub uploads the finished model (merged weights, tokenizer, card), never the Trainer's folder."""
    import huggingface_hub

    from babyllama.tune.hfmodel import load_hf_model

    uploads = []

    class FakeApi:
        def __init__(self, token=None, **_):
            uploads.append(("token", token))

        def create_repo(self, repo_id, **_):
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, repo_id, folder_path, **_):
            uploads.append((repo_id, sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*")
                                            if p.is_file())))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr("babyllama.tune.publish.check_online", lambda: None)
    monkeypatch.setattr("babyllama.export.hub.check_online", lambda: None)
    data = data_dir / "instruct" / "instructions.jsonl"
    assert cli("sft", "--model", tiny_run / "model", "--data", data, "--output_dir", tmp_path, "--run_name", "full",
               "--max_examples", "16", "--eval_size", "0", "--packing", "true", "--learning_rate", "1e-3",
               "--license", "mit", "--push_to_hub", "true", "--hub_model_id", "someone/baby-sft",
               "--hub_token", "hf_secretsecret", *QUICK) == 0
    run = tmp_path / "full"
    assert uploads[0] == ("token", "hf_secretsecret") and uploads[1][0] == "someone/baby-sft"
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(uploads[1][1])
    assert not any("checkpoint" in name or "optimizer" in name for name in uploads[1][1])
    card = (run / "model" / "README.md").read_text()  # the run's own model card
    assert yaml.safe_load(card.split("---\n")[1])["license"] == "mit"
    assert "hf_secretsecret" not in (run / "manifest.json").read_text()
    assert not (run / "adapter").exists()
    tuned, _ = load_hf_model(run)
    base, _ = load_hf_model(tiny_run)
    changed = [n for (n, p), q in zip(tuned.named_parameters(), base.parameters()) if not torch.equal(p, q)]
    assert len(changed) == len(list(base.parameters()))  # full fine-tuning moved every tensor
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"


def test_dpo_reports_heldout_preference(tiny_run, data_dir, tmp_path):
    data = data_dir / "instruct" / "preferences.jsonl"
    assert cli("dpo", "--model", tiny_run, "--data", data, "--output_dir", tmp_path, "--run_name", "dpo",
               "--max_examples", "24", "--eval_size", "8", "--learning_rate", "1e-3", "--beta", "0.1", *QUICK) == 0
    manifest = json.loads((tmp_path / "dpo" / "manifest.json").read_text())
    before, after = manifest["preference_before"], manifest["preference_after"]
    assert before["pairs"] == after["pairs"] == 8
    assert before["reward_margin"] == 0.0  # the reference is the starting model
    assert 0 <= after["preference_accuracy"] <= 1 and after["reward_margin"] != 0.0
    assert any("rewards/margins" in line for line in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines())


def test_prepare_sft_and_words_eval(tiny_run, tinystories, tmp_path, capsys):
    from babyllama.evals.word_match import score, word_used

    assert word_used("jump", "Tom jumped high.") and not word_used("jump", "a jumper")
    assert score(["cat", "dog"], "The cats sat.") == 0.5
    out = tmp_path / "stories.jsonl"
    assert cli("prepare-sft", "--from_stories", tinystories / "valid.txt", "--out", out, "--heldout", "3",
               "--max_words", "120", "--sentence_prob", "0.5") == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    held = [json.loads(line) for line in (tmp_path / "stories.heldout.jsonl").read_text().splitlines()]
    assert rows and len(held) == 3
    for row in rows + held:
        assert len(row["words"]) == 3 and score(row["words"], row["output"]) == 1.0
        assert row["instruction"].startswith("Write a story that uses the words: " + ", ".join(row["words"]))
        if row["sentence"]:
            assert row["sentence"] in row["output"]
    capsys.readouterr()
    assert cli("eval", "--task", "words", "--model", tiny_run, "--base", tiny_run, "--prompts",
               tmp_path / "stories.heldout.jsonl", "--max_new_tokens", "8", "--out", tmp_path / "words.json") == 0
    assert "requested words used" in capsys.readouterr().out
    results = json.loads((tmp_path / "words.json").read_text())
    assert results["base"]["word_share"] == results["model"]["word_share"]  # same model, greedy: same stories
    assert results["model"]["instruction_gain"]["words"] > 0  # held-out prompts carry their stories
    # Guidance at scale 0 decodes the negative prompt alone: every story becomes the first prompt's own story.
    assert cli("eval", "--task", "words", "--model", tiny_run, "--prompts", tmp_path / "stories.heldout.jsonl",
               "--max_new_tokens", "8", "--guidance_scale", "0", "--negative_prompt", held[0]["instruction"],
               "--out", tmp_path / "guided.json") == 0
    guided = json.loads((tmp_path / "guided.json").read_text())["model"]
    assert guided["guidance_scale"] == 0
    assert [s["story"] for s in guided["samples"]] == [results["model"]["samples"][0]["story"]] * len(held)


def test_max_time_stop_is_the_main_process_decision():
    """Under several processes every rank follows rank 0's clock (agree), never its own."""
    from types import SimpleNamespace

    from babyllama.tune.record import metrics_callback

    for own_clock_expired, main_says_stop in [(False, True), (True, False), (False, False), (True, True)]:
        asked = []

        def rank0(value):
            asked.append(value)
            return main_says_stop

        callback = metrics_callback(record=None, max_time=0.0 if own_clock_expired else 3600.0, agree=rank0)
        control = SimpleNamespace(should_training_stop=False)
        callback.on_step_end(None, None, control)
        assert asked == [own_clock_expired]
        assert control.should_training_stop is main_says_stop


def test_fine_tuning_precision_follows_what_the_card_computes(monkeypatch):
    """A T4 (7.5) reports is_bf16_supported() but only emulates bf16: fine-tuning defaults to fp16 there."""
    from babyllama.tune import args

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, expected in (((7, 5), {"bf16": False, "fp16": True}), ((8, 0), {"bf16": True, "fp16": False}),
                                 ((6, 0), {"bf16": False, "fp16": False})):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert args.device_precision() == expected
