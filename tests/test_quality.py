"""Model quality: bits/byte on a text file, and its agreement with lm-evaluation-harness on a local task.

The tiny pretrained run of conftest.py; the first validation stories.
Also the story-instruction data (prepare-sft), preference pairs from the words metric (prepare-dpo), GRPO.
"""

from __future__ import annotations

import json

import pytest
import torch

from babyllama.errors import BabyLlamaError


def cli(*argv):
    from babyllama.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    return exit_info.value.code


def test_rolling_windows_cover_every_token_once():
    from babyllama.evals.bpb import rolling_windows

    tokens = list(range(10, 21))  # 11 tokens
    windows = list(rolling_windows(tokens, prefix=1, seq_len=4))
    assert [t for _, tgt in windows for t in tgt] == tokens
    assert windows[0] == ([1, 10, 11, 12], [10, 11, 12, 13])
    assert windows[-1] == ([17, 18, 19], [18, 19, 20])  # each window sees the previous token


def test_bpb_agrees_with_lm_eval(tiny_run, tinystories, tmp_path, capsys):
    text = tinystories / "valid.txt"
    common = ["--model", tiny_run, "--text", text, "--max_documents", "24", "--seq_len", "64", "--device", "cpu"]
    assert cli("eval", "--task", "bpb", *common, "--out", tmp_path / "bpb.json") == 0
    ours = json.loads((tmp_path / "bpb.json").read_text())
    assert ours["documents"] == 24 and ours["seq_len"] == 64 and 0.5 < ours["bpb"] < 8
    assert "bits/byte" in capsys.readouterr().out
    assert cli("eval", "--task", "lm_eval", "--tasks", "babyllama_text", *common, "--out", tmp_path / "lm.json") == 0
    theirs = json.loads((tmp_path / "lm.json").read_text())["babyllama_text"]["bits_per_byte,none"]
    assert abs(theirs - ours["bpb"]) / ours["bpb"] < 0.03, (theirs, ours["bpb"])
    # The context length matters, so the comparison above is at the same one.
    assert cli("eval", "--task", "bpb", *common[:6], "--seq_len", "8", "--device", "cpu",
               "--out", tmp_path / "short.json") == 0
    assert json.loads((tmp_path / "short.json").read_text())["bpb"] > ours["bpb"]


def test_bpb_of_a_run_its_checkpoint_and_an_exported_folder(tiny_run, tinystories, tmp_path):
    """Any model: a run folder, its final model, a checkpoint, an exported Hugging Face folder."""
    assert cli("export", "--model", tiny_run, "--format", "hf", "--out", tmp_path / "hf") == 0
    checkpoint = sorted((tiny_run / "checkpoints").glob("step_*"))[-1]
    values = {}
    for name, model in [("run", tiny_run), ("model", tiny_run / "model"), ("checkpoint", checkpoint),
                        ("hf", tmp_path / "hf")]:
        out = tmp_path / f"{name}.json"
        assert cli("eval", "--task", "bpb", "--model", model, "--text", tinystories / "jsonl" / "valid.jsonl",
                   "--max_documents", "8", "--seq_len", "32", "--device", "cpu", "--out", out) == 0
        values[name] = json.loads(out.read_text())["bpb"]
    assert values["run"] == values["model"] == pytest.approx(values["hf"], rel=1e-5)
    assert values["checkpoint"] == pytest.approx(values["run"], rel=0.05)  # the last checkpoint is the final step


def test_eval_bad_input(tiny_run, tmp_path, capsys):
    for argv, message in [
        (["--task", "bpb", "--model", tiny_run], "--task bpb needs --text"),
        (["--task", "bpb", "--model", tiny_run, "--text", tmp_path / "none.txt"], "no such file"),
        (["--task", "words", "--model", tiny_run], "needs --prompts"),
        (["--task", "lm_eval", "--model", tiny_run], "needs --tasks"),
    ]:
        assert cli("eval", *argv) == 1
        assert message in capsys.readouterr().err
    with pytest.raises(BabyLlamaError, match="beyond the model's context"):
        from types import SimpleNamespace

        from babyllama.commands.eval import _context

        _context(SimpleNamespace(seq_len=4096), 128)


# --------------------------------------------------------------------------- story instructions

QUICK = ["--max_steps", "2", "--per_device_train_batch_size", "4", "--logging_steps", "1", "--disable_tqdm", "true",
         "--dataloader_pin_memory", "false", "--eval_size", "0"]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def run_256(prepared_512, tmp_path_factory):
    """The tiny model with a 256-token context, like the `15m` preset: many stories fit, some do not."""
    from conftest import pretrain_tiny

    return pretrain_tiny(prepared_512, tmp_path_factory.mktemp("runs"), "ctx256", max_seq_len=256)


def test_readme_prepare_sft_then_sft(run_256, tinystories, tmp_path, capsys):
    """The README's sequence: prepare-sft --model M, then sft --model M; and the dead end without --model is
    gone: the error names both ways out, and --drop_truncated trains on what fits, with the count logged."""
    stories = tinystories / "train.txt"
    fitted = tmp_path / "stories-sft.jsonl"
    assert cli("prepare-sft", "--model", run_256, "--from_stories", stories, "--out", fitted,
               "--max_examples", "300") == 0
    assert "that do not fit the model's context (256 tokens)" in capsys.readouterr().out
    assert len(read_jsonl(fitted)) >= 4
    assert cli("sft", "--model", run_256, "--data", fitted, "--output_dir", tmp_path, "--run_name", "fitted",
               *QUICK) == 0
    assert json.loads((tmp_path / "fitted" / "manifest.json").read_text())["status"] == "completed"

    unfitted = tmp_path / "all.jsonl"
    assert cli("prepare-sft", "--from_stories", stories, "--out", unfitted, "--max_examples", "60") == 0
    capsys.readouterr()
    assert cli("sft", "--model", run_256, "--data", unfitted, "--output_dir", tmp_path, "--run_name", "cut",
               *QUICK) == 1
    err = capsys.readouterr().err
    assert "max_length is already the model's context (256 tokens)" in err
    assert f"babyllama prepare-sft --model {run_256}" in err and "--drop_truncated true" in err
    assert cli("sft", "--model", run_256, "--data", unfitted, "--output_dir", tmp_path, "--run_name", "dropped",
               "--drop_truncated", "true", *QUICK) == 0
    assert "whose answer max_length 256 would cut off (--drop_truncated)" in capsys.readouterr().out


def test_several_word_sets_heldout_by_story_and_pretraining_text(tinystories, tmp_path):
    from babyllama.data.sources import read_documents
    from babyllama.evals.word_match import score

    out, text = tmp_path / "sets.jsonl", tmp_path / "instruct.txt"
    assert cli("prepare-sft", "--from_stories", tinystories / "valid.txt", "--out", out, "--max_examples", "30",
               "--sets_per_story", "3", "--sentence_prob", "0.5", "--heldout", "5", "--text_out", text) == 0
    train, held = read_jsonl(out), read_jsonl(tmp_path / "sets.heldout.jsonl")
    assert len(held) == 5
    by_story: dict[str, list] = {}
    for row in train:
        by_story.setdefault(row["output"], []).append(frozenset(row["words"]))
        assert score(row["words"], row["output"]) == 1.0
        if row["sentence"]:
            assert row["sentence"] in row["output"] and row["sentence"] in row["instruction"]
    assert len(by_story) == 25 and len(train) > 60  # several sets per story...
    assert all(len(set(sets)) == len(sets) for sets in by_story.values())  # ...each a different set
    assert not {row["output"] for row in held} & set(by_story)  # no held-out story is trained on
    docs = list(read_documents(text))
    assert len(docs) == len(train)
    for doc in docs:
        words_line, *_, = doc.split("\n")
        assert words_line.startswith("Words: ") and "\nStory: " in doc
    with_sentence = [d for d in docs if "\nSentence: " in d]
    assert with_sentence and len(with_sentence) < len(docs)
    assert cli("prepare-sft", "--from_stories", tinystories / "valid.txt", "--out", out, "--sets_per_story", "0") == 1


def test_more_words_per_training_example_but_heldout_prompts_keep_num_words(tinystories, tmp_path):
    from babyllama.evals.word_match import score

    out = tmp_path / "more.jsonl"
    assert cli("prepare-sft", "--from_stories", tinystories / "valid.txt", "--out", out, "--max_examples", "40",
               "--num_words", "3", "--num_words_max", "6", "--heldout", "8") == 0
    train, held = read_jsonl(out), read_jsonl(tmp_path / "more.heldout.jsonl")
    counts = {len(row["words"]) for row in train}
    assert counts <= {3, 4, 5, 6} and len(counts) > 1  # a spread of word counts...
    for row in train:  # ...each listed in the instruction and used by the story
        assert score(row["words"], row["output"]) == 1.0
        assert row["instruction"].endswith(", ".join(row["words"]) + ".") or row["sentence"]
    assert held and all(len(row["words"]) == 3 and ", ".join(row["words"]) in row["instruction"] for row in held)
    assert cli("prepare-sft", "--from_stories", tinystories / "valid.txt", "--out", out, "--num_words", "4",
               "--num_words_max", "3") == 1


# --------------------------------------------------------------------------- preference pairs and GRPO


def test_pick_pair_by_words():
    from babyllama.tune.word_pairs import pick_pair

    prompt = {"instruction": "Write a story that uses the words: cat, red.", "words": ["cat", "red"],
              "output": "The red cat sat."}
    pair = pick_pair(prompt, ["A dog ran.", "The cat was red.", "A cat ran."])
    assert (pair["chosen"], pair["rejected"], pair["chosen_share"], pair["rejected_share"]) == \
        ("The cat was red.", "A dog ran.", 1.0, 0.0)
    assert pick_pair(prompt, ["A cat ran.", "A dog ran."]) is None  # no sample uses every word
    assert pick_pair(prompt, ["A cat ran.", "A dog ran."], min_chosen_share=0.5)["chosen"] == "A cat ran."
    ref = pick_pair(prompt, ["A cat ran.", "A dog ran."], reference_chosen=True)
    assert ref["chosen"] == "The red cat sat." and ref["chosen_source"] == "reference"
    assert pick_pair(prompt, ["The cat was red.", "A red cat."]) is None  # all equal: nothing to prefer


@pytest.fixture(scope="module")
def words_prompts(tinystories, tmp_path_factory):
    out = tmp_path_factory.mktemp("words") / "prompts.jsonl"
    assert cli("prepare-sft", "--from_stories", tinystories / "valid.txt", "--out", out, "--max_examples", "24",
               "--sentence_prob", "0") == 0
    return out


def test_prepare_dpo_from_words_then_dpo(tiny_run, words_prompts, tmp_path, capsys):
    pairs_path = tmp_path / "pairs.jsonl"
    assert cli("prepare-dpo", "--from_words", words_prompts, "--model", tiny_run, "--out", pairs_path,
               "--num_prompts", "16", "--samples_per_prompt", "3", "--max_new_tokens", "24", "--temperature", "1.0",
               "--reference_chosen", "--device", "cpu") == 0
    assert "pairs from 16 prompts" in capsys.readouterr().out
    pairs = read_jsonl(pairs_path)
    from babyllama.evals.word_match import score

    assert len(pairs) >= 4  # a tiny model misses words often; the source story is the chosen one then
    for pair in pairs:
        assert score(pair["words"], pair["chosen"]) == pair["chosen_share"] == 1.0
        assert score(pair["words"], pair["rejected"]) == pair["rejected_share"] < 1.0
    assert cli("dpo", "--model", tiny_run, "--data", pairs_path, "--output_dir", tmp_path, "--run_name", "dpo",
               "--eval_size", "2", *QUICK[:-2]) == 0
    assert json.loads((tmp_path / "dpo" / "manifest.json").read_text())["status"] == "completed"
    assert cli("prepare-dpo", "--from_words", words_prompts, "--model", tiny_run, "--out", pairs_path,
               "--temperature", "0") == 1
    assert "greedy decoding writes the same story" in capsys.readouterr().err


def test_grpo_words_reward_runs_and_records(tiny_run, words_prompts, tmp_path, capsys):
    from babyllama.tune.grpo import words_reward

    assert words_reward([[{"role": "assistant", "content": "The red cat."}], "a dog"], [["cat", "red"], ["dog"]]) \
        == [1.0, 1.0]
    assert words_reward(["no"], [["cat", "red"]]) == [0.0]
    grpo = ["grpo", "--model", tiny_run, "--data", words_prompts, "--output_dir", tmp_path, "--eval_size", "0",
            "--lora", "--per_device_train_batch_size", "4", "--num_generations", "4",
            "--max_completion_length", "16", "--logging_steps", "1", "--disable_tqdm", "true",
            "--dataloader_pin_memory", "false", "--learning_rate", "1e-3"]
    assert cli(*grpo, "--run_name", "grpo", "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1") == 0
    run = tmp_path / "grpo"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["kind"] == "grpo"
    assert manifest["config"]["train"]["num_generations"] == 4
    logs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/words_reward/mean" in entry for entry in logs)
    assert (run / "model" / "model.safetensors").is_file() and (run / "adapter").is_dir()
    # Resume from the Trainer's checkpoint: it continues to step 3.
    checkpoint = run / "checkpoints" / "checkpoint-2"
    assert checkpoint.is_dir()
    assert cli(*grpo, "--run_name", "grpo-resumed", "--max_steps", "3", "--resume_from_checkpoint", checkpoint) == 0
    resumed = [json.loads(line) for line in (tmp_path / "grpo-resumed" / "metrics.jsonl").read_text().splitlines()]
    assert {entry["step"] for entry in resumed if "loss" in entry} == {3}


class _PromptAware(torch.nn.Module):
    """A stand-in model: logits favour the tokens of the user turn (copying=True), or only the previous token."""

    def __init__(self, vocab: int, user_id: int, end_id: int, context: int, copying: bool):
        super().__init__()
        self.vocab, self.user_id, self.end_id, self.copying = vocab, user_id, end_id, copying
        self.config = type("Config", (), {"max_seq_len": context})()

    def forward(self, ids):
        logits = torch.nn.functional.one_hot(torch.roll(ids, 1, dims=1), self.vocab).float()
        if self.copying:
            row = ids[0].tolist()
            turn = row[row.index(self.user_id) + 1:row.index(self.end_id)]
            logits[:, :, turn] += 5.0
        return logits


def test_instruction_gain_tells_a_copying_model_from_a_deaf_one(tiny_run, tinystories, tmp_path):
    """Several nats for a model that lifts the words of its instruction, exactly zero for one that cannot see it."""
    from babyllama.evals.instruction_gain import first_word_token, instruction_gain
    from babyllama.evals.word_match import word_used
    from babyllama.evals.words import read_prompts
    from babyllama.infer.chat import ChatSession

    session = ChatSession(tiny_run)
    tokenizer = session.hf_tokenizer
    story = "Tom jumped. The cats ran."
    offsets = tokenizer(story, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    jump_token = first_word_token(story, "jump", offsets)
    assert offsets[jump_token][0] <= story.index("jumped") < offsets[jump_token][1]
    assert first_word_token(story, "dog", offsets) is None

    made = tmp_path / "prompts.jsonl"
    assert cli("prepare-sft", "--from_stories", tinystories / "valid.txt", "--out", made, "--max_examples", "100",
               "--sentence_prob", "0") == 0
    prompts = []  # each story's first 150 characters, and the words used there: inside the tiny 128-token context
    for prompt in read_prompts(made):
        opening = prompt["output"][:150]
        words = [w for w in prompt["words"] if word_used(w, opening)]
        if words:
            prompts.append({**prompt, "output": opening, "words": words})
    ids = dict(vocab=len(tokenizer), user_id=tokenizer.convert_tokens_to_ids("<|user|>"), end_id=session.end_id,
               context=session.model.config.max_seq_len)
    session.model = _PromptAware(copying=False, **ids)
    deaf = instruction_gain(session, prompts)
    session.model = _PromptAware(copying=True, **ids)
    copying = instruction_gain(session, prompts)
    assert deaf["words"] == copying["words"] > 20
    assert deaf["gain_nats"] == 0.0 and deaf["top1_right"] == deaf["top1_other"]
    assert copying["gain_nats"] > 3.0 and copying["top1_right"] > copying["top1_other"]
    assert instruction_gain(session, [{k: v for k, v in p.items() if k != "output"} for p in prompts]) is None
