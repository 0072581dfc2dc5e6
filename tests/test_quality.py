"""Model quality: bits/byte on a text file, and its agreement with lm-evaluation-harness on a local task.

The tiny pretrained run of conftest.py; the first 40 validation stories.
"""

from __future__ import annotations

import json

import pytest

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
    pytest.importorskip("lm_eval")
    text = tinystories / "valid.txt"
    common = ["--model", tiny_run, "--text", text, "--max_documents", "40", "--seq_len", "64", "--device", "cpu"]
    assert cli("eval", "--task", "bpb", *common, "--out", tmp_path / "bpb.json") == 0
    ours = json.loads((tmp_path / "bpb.json").read_text())
    assert ours["documents"] == 40 and ours["seq_len"] == 64 and 0.5 < ours["bpb"] < 8
    assert "bits/byte" in capsys.readouterr().out
    assert cli("eval", "--task", "lm_eval", "--tasks", "babyllama_text", *common, "--out", tmp_path / "lm.json") == 0
    theirs = json.loads((tmp_path / "lm.json").read_text())["babyllama_text"]["bits_per_byte,none"]
    assert abs(theirs - ours["bpb"]) / ours["bpb"] < 0.03, (theirs, ours["bpb"])
    # The context length matters, so the comparison above is at the same one.
    assert cli("eval", "--task", "bpb", *common[:-4], "--max_documents", "40", "--seq_len", "8",
               "--out", tmp_path / "short.json") == 0
    assert json.loads((tmp_path / "short.json").read_text())["bpb"] > ours["bpb"]


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
    from babyllama.evals.words import score

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
