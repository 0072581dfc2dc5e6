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
