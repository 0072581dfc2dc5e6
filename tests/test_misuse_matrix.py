"""Every subcommand x a catalogue of misuse (files, folders, numbers, interruptions): each case must end with a
nonzero exit, no traceback, a message naming the culprit, and — the sandbox hashed before and after — nothing
that existed before changed. Cases run in-process through `babyllama.cli.main`, in one shared sandbox.

Each case carries the class of failure it guards against (issue #15): "loss" (data lost or damaged),
"traceback", "misleading" (an unclear, untrue or silent answer).
"""

from __future__ import annotations

import errno
import os
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest

import babyllama
from babyllama.cli import COMMANDS, main



@dataclass
class Case:
    argv: list[str]
    expect: list[str]  # substrings of stderr that name the culprit
    kind: str  # loss | traceback | misleading
    status: Optional[int] = None  # the exact exit status, when it matters (2: argparse, 130: Ctrl-C)
    patch: Optional[Callable] = None  # (monkeypatch) -> None, to fake an interruption or a fault
    marks: list = field(default_factory=list)

    @property
    def isolated(self) -> bool:
        """Cases that may still damage what they are given (until the arch branch lands) get their own copy of
        the sandbox, so that a failure stays their own."""
        return self.kind == "loss" or bool(self.marks)


def interrupt(target: str):
    def apply(monkeypatch):
        def stop(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(target, stop)
    return apply


def fault(target: str, error: BaseException):
    def apply(monkeypatch):
        def fail(*args, **kwargs):
            raise error

        monkeypatch.setattr(target, fail)
    return apply


# Training flags that keep a pretrain case that is not refused (a bug today) down to seconds.
CHEAP = ["--max_time", "2", "--eval_max_tokens", "256", "--num_samples", "0", "--per_device_train_batch_size", "2",
         "--seq_len", "32", "--torch_compile", "false"]
STORY = "Once upon a time there was a little cat. It liked milk and the warm sun. The end."
UNWRITABLE = "/proc/babyllama-no-such/out"  # nobody, root included, can create this

CASES: dict[str, Case] = {
    # ------------------------------------------------------------------ sample
    "sample-temperature-nan": Case(["sample", "--model", "runs/tiny", "--temperature", "nan"], ["--temperature", "finite"], "traceback", 2),
    "sample-temperature-negative": Case(["sample", "--model", "runs/tiny", "--temperature", "-1"], ["--temperature", ">= 0"], "misleading", 2),
    "sample-top_p-zero": Case(["sample", "--model", "runs/tiny", "--top_p", "0"], ["--top_p", "(0, 1]"], "misleading", 2),
    "sample-top_p-above-one": Case(["sample", "--model", "runs/tiny", "--top_p", "1.5"], ["--top_p"], "misleading", 2),
    "sample-top_k-zero": Case(["sample", "--model", "runs/tiny", "--top_k", "0"], ["--top_k", ">= 1"], "misleading", 2),
    "sample-max_new_tokens-zero": Case(["sample", "--model", "runs/tiny", "--max_new_tokens", "0"], ["--max_new_tokens"], "misleading", 2),
    "sample-num_samples-zero": Case(["sample", "--model", "runs/tiny", "--num_samples", "0"], ["--num_samples"], "misleading", 2),
    "sample-seed-negative": Case(["sample", "--model", "runs/tiny", "--seed", "-5"], ["--seed"], "traceback", 2),
    "sample-model-missing": Case(["sample", "--model", "runs/nope"], ["runs/nope", "no such"], "misleading"),
    "sample-model-is-data": Case(["sample", "--model", "data"], ["data", "prepared data folder"], "misleading"),
    "sample-model-is-a-text-file": Case(["sample", "--model", "corpus/stories.txt"], ["stories.txt"], "traceback"),
    "sample-ctrl-c": Case(["sample", "--model", "runs/tiny"], ["sample", "Ctrl-C"], "misleading", 130,
                          interrupt("babyllama.infer.generate.generate")),
    "sample-truncated-model": Case(["sample", "--model", "runs/truncated"], ["model.safetensors"], "traceback"),
    "sample-unexpected-bug": Case(["sample", "--model", "runs/tiny"], ["unexpected error", "--debug", "report"],
                                  "traceback", 1, fault("babyllama.infer.generate.generate", RuntimeError("boom"))),
    # ------------------------------------------------------------------ chat
    "chat-top_p-zero": Case(["chat", "--model", "runs/tiny", "--top_p", "0", "--message", "hi"], ["--top_p"], "misleading", 2),
    "chat-top_k-zero": Case(["chat", "--model", "runs/tiny", "--top_k", "0", "--message", "hi"], ["--top_k"], "misleading", 2),
    "chat-temperature-inf": Case(["chat", "--model", "runs/tiny", "--temperature", "inf", "--message", "hi"], ["--temperature"], "traceback", 2),
    "chat-max_new_tokens-negative": Case(["chat", "--model", "runs/tiny", "--max_new_tokens", "-3", "--message", "hi"], ["--max_new_tokens"], "misleading", 2),
    "chat-model-is-data": Case(["chat", "--model", "data", "--message", "hi"], ["prepared data folder"], "misleading"),
    "chat-model-missing": Case(["chat", "--model", "nowhere", "--message", "hi"], ["nowhere", "no such"], "misleading"),
    "chat-truncated-model": Case(["chat", "--model", "runs/truncated", "--message", "hi"], ["model.safetensors"],
                                 "traceback"),
    # ------------------------------------------------------------------ eval
    "eval-out-is-a-folder": Case(["eval", "--task", "words", "--model", "runs/tiny", "--prompts", "prompts.jsonl",
                                  "--out", "mine"], ["--out", "mine", "folder"], "traceback"),
    "eval-out-is-its-prompts": Case(["eval", "--task", "words", "--model", "runs/tiny", "--prompts", "prompts.jsonl",
                                     "--out", "prompts.jsonl"], ["--out", "--prompts", "overwrite"], "loss"),
    "eval-out-unwritable": Case(["eval", "--task", "words", "--model", "runs/tiny", "--prompts", "prompts.jsonl",
                                 "--out", UNWRITABLE + "/r.json"], ["--out", "/proc"], "traceback"),
    "eval-out-under-a-file": Case(["eval", "--task", "words", "--model", "runs/tiny", "--prompts", "prompts.jsonl",
                                   "--out", "afile.txt/r.json"], ["afile.txt", "is a file"], "traceback"),
    "eval-num_prompts-zero": Case(["eval", "--task", "words", "--model", "runs/tiny", "--prompts", "prompts.jsonl",
                                   "--num_prompts", "0"], ["--num_prompts"], "misleading", 2),
    "eval-temperature-nan": Case(["eval", "--task", "words", "--model", "runs/tiny", "--prompts", "prompts.jsonl",
                                  "--temperature", "nan"], ["--temperature"], "traceback", 2),
    "eval-model-is-data": Case(["eval", "--task", "words", "--model", "data", "--prompts", "prompts.jsonl"],
                               ["prepared data folder"], "misleading"),
    "eval-base-missing": Case(["eval", "--task", "words", "--model", "runs/tiny", "--base", "runs/gone",
                               "--prompts", "prompts.jsonl"], ["--base", "runs/gone"], "misleading"),
    "eval-prompts-not-json": Case(["eval", "--task", "words", "--model", "runs/tiny", "--prompts", "corpus/stories.txt"],
                                  ["stories.txt", "line 1"], "traceback"),
    "eval-ctrl-c": Case(["eval", "--task", "words", "--model", "runs/tiny", "--prompts", "prompts.jsonl"],
                        ["eval", "Ctrl-C", "no results"], "misleading", 130,
                        interrupt("babyllama.evals.words.evaluate_words")),
    # ------------------------------------------------------------------ export
    "export-hf-out-is-a-file": Case(["export", "--model", "runs/tiny", "--out", "afile.txt"], ["afile.txt", "is a file"], "traceback"),
    "export-hf-out-is-a-user-folder": Case(["export", "--model", "runs/tiny", "--out", "mine"], ["mine", "--overwrite"], "loss"),
    "export-hf-out-is-another-runs-model": Case(["export", "--model", "runs/tiny", "--out", "runs/other/model"],
                                                ["runs/other/model", "run", "--overwrite"], "loss"),
    "export-hf-out-is-its-input": Case(["export", "--model", "runs/tiny/model", "--out", "runs/tiny/model"],
                                       ["input", "--model"], "loss"),
    "export-hf-out-inside-its-input": Case(["export", "--model", "runs/tiny", "--out", "runs/tiny/model/hf"],
                                           ["input"], "loss"),
    "export-hf-out-is-a-run-folder": Case(["export", "--model", "runs/tiny", "--out", "runs/other", "--overwrite"],
                                          ["runs/other", "run folder"], "loss"),
    "export-hf-out-is-data": Case(["export", "--model", "runs/tiny", "--out", "data", "--overwrite"],
                                  ["data", "prepared data"], "loss"),
    "export-llama2c-over-a-user-file": Case(["export", "--model", "runs/tiny", "--format", "llama2c", "--out",
                                             "mine/weights.bin"], ["weights.bin", "--overwrite"], "loss"),
    "export-gguf-over-a-user-file": Case(["export", "--model", "runs/tiny", "--format", "gguf", "--out",
                                          "mine/model.gguf"], ["model.gguf", "--overwrite"], "loss"),
    "export-gguf-out-unwritable": Case(["export", "--model", "runs/tiny", "--format", "gguf", "--out",
                                        UNWRITABLE + "/m.gguf"], ["/proc"], "traceback"),
    "export-out-under-a-file": Case(["export", "--model", "runs/tiny", "--out", "afile.txt/hf"], ["afile.txt"], "traceback"),
    "export-model-is-data": Case(["export", "--model", "data", "--out", "new-export"], ["prepared data folder"], "misleading"),
    "export-truncated-model": Case(["export", "--model", "runs/truncated", "--out", "new-export"],
                                   ["model.safetensors"], "traceback"),
    "export-disk-full": Case(["export", "--model", "runs/tiny", "--out", "new-export"], ["new-export", "no space"],
                             "traceback", 1, fault("babyllama.export.hf.export_hf",
                                                   OSError(errno.ENOSPC, "No space left on device", "new-export/x"))),
    "export-ctrl-c": Case(["export", "--model", "runs/tiny", "--out", "new-export"], ["export", "Ctrl-C"],
                          "misleading", 130, interrupt("babyllama.export.hf.export_hf")),
    # ------------------------------------------------------------------ prepare
    "prepare-data-is-a-run": Case(["prepare", "--data", "runs/tiny", "--out", "new-data"], ["runs/tiny", "run folder"], "misleading"),
    "prepare-data-is-prepared": Case(["prepare", "--data", "data", "--out", "new-data"], ["data", "already a prepared"], "misleading"),
    "prepare-out-is-its-corpus": Case(["prepare", "--data", "corpus", "--out", "corpus", "--vocab_size", "300"],
                                      ["--out", "input", "--data"], "loss"),
    "prepare-out-is-a-user-folder": Case(["prepare", "--data", "corpus", "--out", "mine", "--vocab_size", "300"],
                                         ["mine", "other files"], "loss"),
    "prepare-out-is-a-run": Case(["prepare", "--data", "corpus", "--out", "runs/tiny", "--vocab_size", "300"],
                                 ["runs/tiny", "run"], "loss"),
    "prepare-out-is-a-file": Case(["prepare", "--data", "corpus", "--out", "afile.txt", "--vocab_size", "300"],
                                  ["afile.txt", "is a file"], "traceback"),
    "prepare-out-unwritable": Case(["prepare", "--data", "corpus", "--out", UNWRITABLE, "--vocab_size", "300"],
                                   ["/proc"], "traceback"),
    "prepare-valid_fraction-nan": Case(["prepare", "--data", "corpus", "--out", "new-data", "--valid_fraction", "nan"],
                                       ["--valid_fraction"], "misleading"),
    "prepare-data-missing": Case(["prepare", "--data", "no-such-corpus.txt", "--out", "new-data"], ["no-such-corpus.txt"], "misleading"),
    "prepare-ctrl-c": Case(["prepare", "--data", "corpus", "--out", "data", "--vocab_size", "300"],
                           ["prepare", "Ctrl-C", "unchanged"], "misleading", 130,
                           interrupt("babyllama.commands.prepare.prepare")),
    # ------------------------------------------------------------------ prepare-sft
    "prepare-sft-out-is-its-input": Case(["prepare-sft", "--from_stories", "stories.jsonl", "--out", "stories.jsonl"],
                                         ["--out", "--from_stories", "overwrite"], "loss"),
    "prepare-sft-out-is-a-folder": Case(["prepare-sft", "--from_stories", "stories.jsonl", "--out", "mine"],
                                        ["--out", "mine", "folder"], "traceback"),
    "prepare-sft-from-a-folder": Case(["prepare-sft", "--from_stories", "corpus", "--out", "sft-new.jsonl"],
                                      ["--from_stories", "folder"], "misleading"),
    "prepare-sft-heldout-negative": Case(["prepare-sft", "--from_stories", "stories.jsonl", "--out", "sft-new.jsonl",
                                          "--heldout", "-1"], ["--heldout"], "misleading"),
    "prepare-sft-num_words-zero": Case(["prepare-sft", "--from_stories", "stories.jsonl", "--out", "sft-new.jsonl",
                                        "--num_words", "0"], ["--num_words"], "misleading"),
    "prepare-sft-sentence_prob-nan": Case(["prepare-sft", "--from_stories", "stories.jsonl", "--out", "sft-new.jsonl",
                                           "--sentence_prob", "nan"], ["--sentence_prob"], "misleading"),
    "prepare-sft-model-is-data": Case(["prepare-sft", "--from_stories", "stories.jsonl", "--out", "sft-new.jsonl",
                                       "--model", "data"], ["prepared data folder"], "misleading"),
    # ------------------------------------------------------------------ pretrain
    "pretrain-data-is-a-run": Case(["pretrain", "--data", "runs/tiny", "--output_dir", "runs", "--run_name", "new"],
                                   ["runs/tiny", "not a prepared data folder"], "traceback"),
    "pretrain-data-is-a-user-folder": Case(["pretrain", "--data", "mine", "--output_dir", "runs", "--run_name", "new"],
                                           ["mine", "prepared data"], "misleading"),
    "pretrain-data-is-a-file": Case(["pretrain", "--data", "afile.txt", "--output_dir", "runs", "--run_name", "new"],
                                    ["afile.txt"], "misleading"),
    "pretrain-overwrite-a-user-folder": Case(["pretrain", "--data", "data", "--output_dir", ".", "--run_name", "mine",
                                              "--overwrite_output_dir", "--max_steps", "1", *CHEAP], ["mine"], "loss"),
    "pretrain-overwrite-its-data": Case(["pretrain", "--data", "data", "--output_dir", ".", "--run_name", "data",
                                         "--overwrite_output_dir", "--max_steps", "1", *CHEAP], ["data"], "loss"),
    "pretrain-max_steps-zero": Case(["pretrain", "--data", "data", "--output_dir", "runs", "--run_name", "new",
                                     "--max_steps", "0", *CHEAP], ["max_steps"], "misleading"),  # CHEAP: today it trains (a whole epoch, without it)
    "pretrain-resume-logging_steps-zero": Case(["pretrain", "--resume_from_checkpoint", "runs/tiny",
                                                "--logging_steps", "0"], ["logging_steps"], "traceback"),
    "pretrain-init_from-truncated-model": Case(["pretrain", "--data", "data", "--init_from", "runs/truncated",
                                                "--output_dir", "runs", "--run_name", "new", "--max_steps", "1"],
                                               ["model.safetensors"], "traceback"),
    "pretrain-resume-with-another-tokenizer": Case(["pretrain", "--resume_from_checkpoint", "runs/tiny", "--data",
                                                    "data-other-tokenizer", "--max_steps", "41"],
                                                   ["different tokenizer than the run"],
                                                   "loss"),
    "pretrain-learning_rate-nan": Case(["pretrain", "--data", "data", "--output_dir", "runs", "--run_name", "new",
                                        "--learning_rate", "nan"], ["learning_rate"], "misleading"),
    # ------------------------------------------------------------------ sft / dpo
    "sft-empty-assistant-turns": Case(["sft", "--model", "runs/tiny", "--data", "empty-answers.jsonl",
                                       "--output_dir", "runs", "--run_name", "sft-new"],
                                      ["assistant turns are empty"], "misleading"),
    "sft-data-is-a-run": Case(["sft", "--model", "runs/tiny", "--data", "runs/other", "--output_dir", "runs",
                               "--run_name", "sft-new"], ["runs/other", "run folder"], "misleading"),
    "sft-data-is-pretraining-data": Case(["sft", "--model", "runs/tiny", "--data", "data", "--output_dir", "runs",
                                          "--run_name", "sft-new"], ["data", "pretraining data"], "misleading"),
    "sft-misspelled-flag": Case(["sft", "--model", "runs/tiny", "--data", "sft.jsonl", "--learning_rat", "1e-3"],
                                ["--learning_rat", "did you mean", "--learning_rate"], "misleading", 2),
    "sft-abbreviated-flag": Case(["sft", "--model", "runs/tiny", "--data", "sft.jsonl", "--learning", "1e-3"],
                                 ["--learning"], "misleading", 2),
    "sft-bad-number": Case(["sft", "--model", "runs/tiny", "--data", "sft.jsonl", "--learning_rate", "fast"],
                           ["--learning_rate", "fast"], "traceback", 2),
    "sft-max_examples-zero": Case(["sft", "--model", "runs/tiny", "--data", "sft.jsonl", "--max_examples", "0"],
                                  ["--max_examples"], "misleading"),
    "sft-model-missing": Case(["sft", "--model", "runs/gone", "--data", "sft.jsonl", "--output_dir", "runs",
                               "--run_name", "sft-new"], ["runs/gone"], "misleading"),
    "sft-truncated-model": Case(["sft", "--model", "runs/truncated", "--data", "sft.jsonl", "--output_dir", "runs",
                                 "--run_name", "sft-new"], ["model.safetensors"], "traceback"),
    "dpo-eval_size-negative": Case(["dpo", "--model", "runs/tiny", "--data", "sft.jsonl", "--eval_size", "-1"],
                                   ["--eval_size"], "misleading"),
    "dpo-data-missing": Case(["dpo", "--model", "runs/tiny", "--data", "nothing.jsonl", "--output_dir", "runs",
                              "--run_name", "dpo-new"], ["nothing.jsonl"], "misleading"),
    "dpo-config-missing": Case(["dpo", "--config", "nothing.yaml", "--model", "runs/tiny", "--data", "sft.jsonl"],
                               ["nothing.yaml"], "misleading"),
    # ------------------------------------------------------------------ grpo, prepare-dpo, push
    "grpo-truncated-model": Case(["grpo", "--model", "runs/truncated", "--data", "prompts.jsonl", "--eval_size", "0",
                                  "--output_dir", "runs", "--run_name", "grpo-new"], ["model.safetensors"],
                                 "traceback"),
    "grpo-data-missing": Case(["grpo", "--model", "runs/tiny", "--data", "nothing.jsonl", "--output_dir", "runs",
                               "--run_name", "grpo-new"], ["nothing.jsonl"], "misleading"),
    "prepare-dpo-temperature-zero": Case(["prepare-dpo", "--from_words", "prompts.jsonl", "--model", "runs/tiny",
                                          "--out", "pairs.jsonl", "--temperature", "0"], ["--temperature"],
                                         "misleading"),
    "prepare-dpo-out-over-its-prompts": Case(["prepare-dpo", "--from_words", "prompts.jsonl", "--model",
                                              "runs/tiny", "--out", "prompts.jsonl"], ["--out", "prompts.jsonl"],
                                             "loss"),
    "prepare-dpo-max_new_tokens-zero": Case(["prepare-dpo", "--from_words", "prompts.jsonl", "--model", "runs/tiny",
                                   "--out", "pairs.jsonl", "--max_new_tokens", "0"], ["--max_new_tokens"],
                                  "misleading", 2),
    "push-model-missing": Case(["push", "--model", "runs/gone", "--repo", "me/baby"], ["runs/gone"], "misleading"),
    "push-bad-license": Case(["push", "--model", "runs/tiny", "--repo", "me/baby", "--license", "mine"],
                             ["--license"], "misleading"),
    # ------------------------------------------------------------------ runs
    "runs-show-missing": Case(["runs", "show", "--runs_dir", "runs", "ghost"], ["ghost"], "misleading"),
    "runs-compare-one": Case(["runs", "compare", "--runs_dir", "runs", "tiny"], ["at least two"], "misleading"),
    "runs-compare-out-is-a-folder": Case(["runs", "compare", "--runs_dir", "runs", "tiny", "other", "--out", "mine"],
                                         ["--out", "mine", "folder"], "traceback"),
    "runs-list-missing-dir": Case(["runs", "list", "--runs_dir", "no-runs-here"], ["no-runs-here"], "misleading"),
    "runs-report-manifest-not-a-record": Case(["runs", "report", "--runs_dir", "runs", "listrun"],
                                              ["manifest.json", "not a run record"], "traceback"),
    # ------------------------------------------------------------------ quickstart
    "quickstart-max_time-nan": Case(["quickstart", "--data", "corpus", "--max_time", "nan"], ["--max_time"], "misleading", 2),
    "quickstart-data-is-a-run": Case(["quickstart", "--data", "runs/tiny"], ["runs/tiny", "run folder"], "misleading"),
    "quickstart-ctrl-c": Case(["quickstart", "--data", "corpus", "--output_dir", "runs"], ["quickstart", "Ctrl-C"],
                              "misleading", 130, interrupt("babyllama.commands.prepare.check_paths")),
}


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sandbox(prepared_512, tiny_run, tmp_path_factory) -> Path:
    """A working folder as a user has it: prepared data, two runs, a corpus, example files and a folder of the
    user's own files — every one of which must come out of every case unchanged."""
    root = tmp_path_factory.mktemp("misuse")
    shutil.copytree(prepared_512, root / "data")
    ignore = shutil.ignore_patterns("checkpoints")  # these need the models, not the training state
    shutil.copytree(tiny_run, root / "runs" / "tiny")  # with its checkpoints: the resume cases need them
    shutil.copytree(tiny_run, root / "runs" / "other", ignore=ignore)
    shutil.copytree(tiny_run, root / "runs" / "truncated", ignore=ignore)
    weights = root / "runs" / "truncated" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    other = root / "data-other-tokenizer"  # consistent in itself, but not the tokenizer the runs were trained with
    shutil.copytree(prepared_512, other)
    from tokenizers import Tokenizer

    from babyllama.data.tokenizer import load_tokenizer

    tokenizer = Tokenizer.from_file(str(other / "tokenizer" / "tokenizer.json"))
    tokenizer.add_tokens(["<other>"])  # any change makes it another tokenizer
    tokenizer.save(str(other / "tokenizer" / "tokenizer.json"))

    manifest = json.loads((other / "manifest.json").read_text())
    manifest["tokenizer"]["hash"] = load_tokenizer(other / "tokenizer").hash
    (other / "manifest.json").write_text(json.dumps(manifest))
    (root / "runs" / "listrun").mkdir()
    (root / "runs" / "listrun" / "manifest.json").write_text("[1, 2]")
    (root / "corpus").mkdir()
    (root / "corpus" / "stories.txt").write_text("\n<|endoftext|>\n".join([STORY] * 300))
    (root / "stories.jsonl").write_text("".join(json.dumps({"text": STORY}) + "\n" for _ in range(20)))
    (root / "prompts.jsonl").write_text(json.dumps({"instruction": "Write a story with cat.", "words": ["cat"]}) + "\n")
    chat = [{"role": "user", "content": "Tell me a story."}, {"role": "assistant", "content": STORY}]
    (root / "sft.jsonl").write_text("".join(json.dumps({"messages": chat}) + "\n" for _ in range(8)))
    empty = [{"role": "user", "content": "Tell me a story."}, {"role": "assistant", "content": "  "}]
    (root / "empty-answers.jsonl").write_text("".join(json.dumps({"messages": empty}) + "\n" for _ in range(8)))
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("my own notes")
    (root / "mine" / "weights.bin").write_bytes(b"my own weights")
    (root / "mine" / "model.gguf").write_bytes(b"my own gguf")
    (root / "afile.txt").write_text("a file, not a folder")
    return root


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """(exit status, stderr); an exception escaping main() is a traceback the user would have seen."""
    try:
        main(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException as err:  # noqa: BLE001
        pytest.fail(f"traceback: {type(err).__name__}: {err}")
    else:
        code = 0
    return code, capsys.readouterr().err


def case_params():
    return [pytest.param(name, marks=case.marks, id=name) for name, case in CASES.items()]


@pytest.mark.parametrize("name", case_params())
def test_misuse(name, sandbox, monkeypatch, capsys, tmp_path):
    case = CASES[name]
    if case.isolated:
        sandbox = Path(shutil.copytree(sandbox, tmp_path / "sandbox", symlinks=True))
    monkeypatch.chdir(sandbox)
    monkeypatch.delenv("BABYLLAMA_DEBUG", raising=False)
    if case.patch:
        case.patch(monkeypatch)
    before = snapshot(sandbox)
    code, err = run_cli(case.argv, capsys)
    after = snapshot(sandbox)
    changed = sorted(path for path, digest in before.items() if after.get(path) != digest)
    assert not changed, f"pre-existing files changed or removed: {changed[:5]}"
    assert code != 0, f"exit 0 for misuse; stderr: {err}"
    if case.status is not None:
        assert code == case.status, err
    assert "Traceback" not in err
    for text in case.expect:
        assert text in err, f"{text!r} not in: {err}"
    if case.status == 130 and case.argv[0] != "pretrain":
        assert "second Ctrl-C" not in err and "checkpoint is kept" not in err


def test_the_matrix_covers_every_command():
    assert {case.argv[0] for case in CASES.values()} == set(COMMANDS)


def test_debug_shows_the_traceback(sandbox, monkeypatch):
    monkeypatch.chdir(sandbox)
    fault("babyllama.infer.generate.generate", RuntimeError("boom"))(monkeypatch)
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", "sample", "--model", "runs/tiny"])
    with pytest.raises(RuntimeError, match="boom"):
        main(["sample", "--model", "runs/tiny", "--debug"])
    monkeypatch.setenv("BABYLLAMA_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["sample", "--model", "runs/tiny"])


def test_runs_report_names_malformed_metrics_rows(sandbox, tmp_path, capsys):
    run = tmp_path / "runs" / "bad"
    shutil.copytree(sandbox / "runs" / "tiny", run)
    with open(run / "metrics.jsonl", "a") as metrics:
        metrics.write('{"step": 41, "loss": "high"}\n{cut short\n[1, 2]\n')
    code, err = run_cli(["runs", "report", "--runs_dir", str(tmp_path / "runs"), "bad"], capsys)
    assert code == 0 and "Traceback" not in err
    report = (run / "report.md").read_text()
    lines = len((run / "metrics.jsonl").read_text().splitlines())
    assert f"metrics.jsonl:{lines - 2}: loss should be numbers" in report
    assert f"metrics.jsonl:{lines - 1}: not valid JSON" in report
    assert f"metrics.jsonl:{lines}: a JSON list" in report


def test_export_marks_its_folder_and_replaces_only_exports(sandbox, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(sandbox)
    out = tmp_path / "hf"
    assert run_cli(["export", "--model", "runs/tiny", "--out", str(out)], capsys)[0] == 0
    marker = json.loads((out / ".babyllama-export.json").read_text())
    assert "model.safetensors" in marker["files"]
    assert run_cli(["export", "--model", "runs/other", "--out", str(out)], capsys)[0] == 0  # an export: replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    code, err = run_cli(["export", "--model", "runs/tiny", "--out", str(mine)], capsys)
    assert code == 1 and "--overwrite" in err
    assert run_cli(["export", "--model", "runs/tiny", "--out", str(mine), "--overwrite"], capsys)[0] == 0
    assert (mine / "notes.txt").read_text() == "keep"  # --overwrite replaces the export's files, nothing else


def test_prepare_rebuilds_a_damaged_folder(sandbox, tmp_path, capsys):
    """pretrain says "run `babyllama prepare` again" about a damaged folder: prepare must then rebuild it, not
    answer "up to date: reusing it"."""
    from babyllama.data.shards import PretokenizedData

    data = tmp_path / "data"
    argv = ["prepare", "--data", str(sandbox / "corpus"), "--out", str(data), "--vocab_size", "300",
            "--disable_tqdm"]
    assert run_cli(argv, capsys)[0] == 0
    tokens = json.loads((data / "manifest.json").read_text())["splits"]["train"]["tokens"]
    train = data / "train.bin"
    train.write_bytes(train.read_bytes()[:-8])  # a truncated shard
    code, _ = run_cli(argv, capsys)
    assert code == 0
    assert PretokenizedData(data).tokens("train").shape[0] == tokens


@pytest.mark.parametrize("flag,value", [("--temperature", "nan"), ("--temperature", "-0.5"), ("--max_new_tokens", "0"),
                                        ("--seed", "-1"), ("--guidance_scale", "-1")])
def test_sampling_rules_are_shared(flag, value, capsys):
    """sample, chat and eval define the sampling flags once: the same value gets the same answer from each."""
    messages = set()
    for argv in (["sample", "--model", "m"], ["chat", "--model", "m"],
                 ["eval", "--task", "words", "--model", "m", "--prompts", "p"]):
        code, err = run_cli(argv + [flag, value], capsys)
        assert code == 2
        messages.add(err.strip().splitlines()[-1].split(": error: ", 1)[1])
    assert len(messages) == 1 and flag in messages.pop()


def test_a_second_writer_on_a_training_run_is_refused(sandbox, tmp_path, monkeypatch, capsys):
    """While one process trains a run, a second pretrain on it (new with --overwrite_output_dir, or resumed)
    stops at once naming the owner, and the run's files are not touched by it."""
    import subprocess
    import sys
    import time

    monkeypatch.chdir(sandbox)
    runs = tmp_path / "runs"
    owner_log = tmp_path / "owner.log"
    # The owner is killed below once both checks ran; --max_time only bounds it if the test dies first.
    owner = subprocess.Popen([sys.executable, "-m", "babyllama", "pretrain", "--data", "data", "--output_dir",
                              str(runs), "--run_name", "busy", "--max_time", "600", "--disable_tqdm", "--preset",
                              "260k", "--per_device_train_batch_size", "2", "--seq_len", "32", "--torch_compile",
                              "false", "--bf16", "false"], stdout=owner_log.open("w"), stderr=subprocess.STDOUT,
                             env={**os.environ, "PYTHONPATH": str(Path(babyllama.__file__).parents[1])})
    try:
        deadline = time.time() + 180  # a loaded machine starts Python and torch slowly
        while not (runs / "busy" / "metrics.jsonl").is_file() and time.time() < deadline:
            time.sleep(0.5)
        for argv in (["pretrain", "--data", "data", "--output_dir", str(runs), "--run_name", "busy",
                      "--overwrite_output_dir", "--max_steps", "1"],
                     ["pretrain", "--resume_from_checkpoint", str(runs / "busy"), "--max_steps", "1"]):
            assert owner.poll() is None, f"the owning run stopped early:\n{owner_log.read_text()[-2000:]}"
            code, err = run_cli(argv, capsys)
            assert code != 0 and "Traceback" not in err
            assert str(owner.pid) in err  # the message names the process that owns the run
    finally:
        owner.kill()
        owner.wait()
