"""The issue's list of bad inputs: each gives one clear BabyLlamaError (never a traceback) and damages nothing
already written (prepared shards, run folders)."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from babyllama.data.prepare import PrepareConfig, prepare
from babyllama.errors import BabyLlamaError
from conftest import pretrain_tiny

FAST = dict(per_device_train_batch_size=4, seq_len=32, eval_steps=1000, num_samples=0, logging_steps=1)
STORIES = [json.dumps({"text": f"Once upon a time there was a cat number {i}. It liked milk and the sun."})
           for i in range(60)]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under folder with its sha256: 'nothing was damaged' means this did not change."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def existing(prepared_512, tmp_path_factory) -> Path:
    """A prepared data folder that bad input is then prepared into."""
    folder = tmp_path_factory.mktemp("existing") / "data"
    shutil.copytree(prepared_512, folder)
    return folder


@pytest.fixture(scope="module")
def run2(prepared_512, tmp_path_factory) -> Path:
    return pretrain_tiny(prepared_512, tmp_path_factory.mktemp("runs"), "r", max_steps=2, save_steps=1, **FAST)


# --------------------------------------------------------------------------- corpus files -> prepare

CORPUS_CASES = {
    "empty.txt": (b"", "no train documents in {path}: the files are empty or whitespace only"),
    "blank.txt": (b"  \n\t\n\n   \n", "no train documents in {path}: the files are empty or whitespace only"),
    "latin1.txt": ("Once upon a time\nthe caf\u00e9 was open\n".encode("latin-1"),
                   "{path}, line 2: invalid UTF-8 (invalid continuation byte at byte 7); re-encode the file as UTF-8"),
    "malformed.jsonl": (("\n".join(STORIES[:3]) + "\n{not json\n").encode(),
                        "{path}, line 4: not valid JSON (Expecting property name enclosed in double quotes at "
                        "column 2) (pass --skip_bad_lines to skip and count such lines)"),
    "nofield.jsonl": (b'{"body": "a story"}\n', "{path}, line 1: no field 'text' (fields: body); choose one with "
                                               "--text_field (pass --skip_bad_lines to skip and count such lines)"),
    "number.jsonl": (b'{"text": 42}\n', "{path}, line 1: field 'text' is int, not a string (pass --skip_bad_lines "
                                        "to skip and count such lines)"),
    "null.jsonl": (b'{"text": null}\n', "{path}, line 1: field 'text' is NoneType, not a string (pass "
                                        "--skip_bad_lines to skip and count such lines)"),
    "list.jsonl": (b'["a", "b"]\n', "{path}, line 1: expected a JSON object, got list (pass --skip_bad_lines to "
                                    "skip and count such lines)"),
    "badbytes.jsonl": (b'{"text": "caf\xe9"}\n', "{path}, line 1: invalid UTF-8 (invalid continuation byte at byte "
                                                 "13); re-encode the file as UTF-8 (pass --skip_bad_lines to skip and "
                                                 "count such lines)"),
}


@pytest.mark.parametrize("name", sorted(CORPUS_CASES))
def test_bad_corpus_gives_a_clear_error_and_keeps_existing_shards(existing, tmp_path, name):
    content, message = CORPUS_CASES[name]
    path = tmp_path / name
    path.write_bytes(content)
    before = snapshot(existing)
    with pytest.raises(BabyLlamaError) as err:
        prepare(PrepareConfig(data=str(path), out=str(existing), vocab_size=300, disable_tqdm=True), log=lambda _: None)
    assert str(err.value) == message.format(path=path)
    assert snapshot(existing) == before  # the previous shards, tokenizer and manifest are untouched
    assert not list(existing.glob(".*"))  # no staging left behind


def test_bad_corpus_into_a_new_folder_leaves_no_folder(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("")
    with pytest.raises(BabyLlamaError):
        prepare(PrepareConfig(data=str(path), out=str(tmp_path / "new"), vocab_size=300, disable_tqdm=True),
                log=lambda _: None)
    assert not (tmp_path / "new").exists()


def test_skip_bad_lines_skips_and_counts(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = STORIES[:30] + ["{not json", '{"body": 1}', '{"text": 7}', "[]"] + STORIES[30:]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"text": "\xff"}\n')
    out = prepare(PrepareConfig(data=str(path), out=str(tmp_path / "out"), vocab_size=300, skip_bad_lines=True,
                                valid_fraction=0.1, disable_tqdm=True), log=lambda _: None)
    read = json.loads((out / "manifest.json").read_text())["read"]
    assert read["bad_lines_skipped"] == 5
    assert read["bad_line_examples"][0] == f"{path}, line 31: not valid JSON (Expecting property name enclosed in " \
                                           f"double quotes at column 2)"


def test_vocabulary_too_small_for_the_special_tokens(existing):
    before = snapshot(existing)
    with pytest.raises(BabyLlamaError) as err:
        prepare(PrepareConfig(data=str(existing.parent), out=str(existing), vocab_size=100), log=lambda _: None)
    assert str(err.value) == "--vocab_size 100 is too small: the 256 bytes and the special tokens need at least 264"
    assert snapshot(existing) == before


@pytest.mark.parametrize("field,value,message", [
    ("valid_fraction", 0.0, "--valid_fraction must be in (0, 0.5), got 0.0"),
    ("valid_fraction", float("nan"), "--valid_fraction must be in (0, 0.5), got nan"),
    ("tokenizer_max_bytes", 0, "--tokenizer_max_bytes must be positive, got 0"),
])
def test_prepare_rejects_non_positive_sizes(existing, field, value, message):
    with pytest.raises(BabyLlamaError) as err:
        prepare(PrepareConfig(data=str(existing.parent), out=str(existing), **{field: value}), log=lambda _: None)
    assert str(err.value) == message


# --------------------------------------------------------------------------- data, model and config -> pretrain


def test_shards_made_with_another_tokenizer(prepared_512, tmp_path):
    from tokenizers import Tokenizer

    data = tmp_path / "data"
    shutil.copytree(prepared_512, data)
    tokenizer = Tokenizer.from_file(str(data / "tokenizer" / "tokenizer.json"))
    tokenizer.add_tokens(["<extra>"])  # any change makes it another tokenizer
    tokenizer.save(str(data / "tokenizer" / "tokenizer.json"))
    manifest_hash = json.loads((data / "manifest.json").read_text())["tokenizer"]["hash"]
    with pytest.raises(BabyLlamaError) as err:
        pretrain_tiny(data, tmp_path / "runs", "x", max_steps=2, **FAST)
    assert str(err.value).startswith(f"{data}: the shards were made with another tokenizer (hash {manifest_hash[:12]} "
                                     f"in manifest.json, ")
    assert str(err.value).endswith("in tokenizer/); run `babyllama prepare` again")
    assert not (tmp_path / "runs").exists()


def test_model_vocabulary_smaller_than_the_tokenizer(prepared_512, tmp_path):
    with pytest.raises(BabyLlamaError) as err:
        pretrain_tiny(prepared_512, tmp_path, "x", max_steps=2, vocab_size=300, **FAST)
    assert str(err.value) == "--vocab_size 300 is smaller than the tokenizer's 512 tokens"
    assert not (tmp_path / "x").exists()


def test_init_from_a_model_with_another_tokenizer(run2, tmp_path, tinystories):
    other = prepare(PrepareConfig(data=str(tinystories / "valid.txt"), out=str(tmp_path / "d300"), vocab_size=300,
                                  valid_fraction=0.1, disable_tqdm=True), log=lambda _: None)
    before = snapshot(run2)
    with pytest.raises(BabyLlamaError) as err:
        pretrain_tiny(other, tmp_path, "x", max_steps=2, init_from=str(run2), **FAST)
    assert str(err.value) == (f"--init_from {run2} uses a different tokenizer than --data {other}; prepare the data "
                              f"with --tokenizer {run2}")
    assert snapshot(run2) == before


def test_model_whose_vocabulary_does_not_match_its_tokenizer(run2, tmp_path, prepared_512):
    from babyllama.modelio import load_model

    model = tmp_path / "model"
    shutil.copytree(run2 / "model", model)
    config = json.loads((model / "config.json").read_text())
    config["vocab_size"] = 300  # the weights and the tokenizer say 512
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(BabyLlamaError, match=r"embed_tokens.weight has shape \(512, 64\), config.json implies "
                                             r"\(300, 64\)"):
        load_model(model)


def test_sequence_length_beyond_the_context(prepared_512, tmp_path):
    with pytest.raises(BabyLlamaError) as err:
        pretrain_tiny(prepared_512, tmp_path, "x", max_steps=2, **{**FAST, "seq_len": 256})
    assert str(err.value) == ("--seq_len 256 is beyond the model's context (max_seq_len 128); lower --seq_len or "
                              "raise --max_seq_len")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("override,message", [
    ({"learning_rate": 0.0}, "--learning_rate must be a positive finite number, got 0.0"),
    ({"learning_rate": float("nan")}, "--learning_rate must be a positive finite number, got nan"),
    ({"learning_rate": float("inf")}, "--learning_rate must be a positive finite number, got inf"),
    ({"per_device_train_batch_size": 0}, "--per_device_train_batch_size must be a positive finite number, got 0"),
    ({"gradient_accumulation_steps": -2}, "--gradient_accumulation_steps must be a positive finite number, got -2"),
    ({"seq_len": 0}, "--seq_len must be a positive finite number, got 0"),
    ({"save_steps": 0}, "--save_steps must be a positive finite number, got 0"),
    ({"max_consecutive_nonfinite": 0}, "--max_consecutive_nonfinite must be a positive finite number, got 0"),
    ({"adam_beta1": 1.0}, "--adam_beta1 must be in [0, 1), got 1.0"),
    ({"dim": 0}, "model field 'dim' must be positive, got 0"),
    ({"n_layers": -1}, "model field 'n_layers' must be positive, got -1"),
    ({"multiple_of": 0}, "model field 'multiple_of' must be positive, got 0"),
    ({"dim": 66}, "dim (66) must be divisible by n_heads (4)"),
    ({"preset": "15M"}, "unknown preset '15M' (did you mean \"15m\"?); choose one of 260k, 15m, 42m, 110m"),
])
def test_non_positive_sizes_and_rates_and_unknown_presets(prepared_512, tmp_path, override, message):
    with pytest.raises(BabyLlamaError) as err:
        pretrain_tiny(prepared_512, tmp_path, "x", max_steps=2, **{**FAST, **override})
    assert str(err.value) == message
    assert not (tmp_path / "x").exists()


def test_unknown_config_keys_suggest_the_right_one(tmp_path):
    from babyllama.commands.common import explicit_values
    from babyllama.config import ModelConfig, TrainConfig

    config = tmp_path / "run.yaml"
    config.write_text("learning_rat: 0.001\nseq_len: 64\n")
    with pytest.raises(BabyLlamaError) as err:
        explicit_values(argparse.Namespace(config=str(config)), TrainConfig, ModelConfig)
    assert str(err.value) == f"unknown option 'learning_rat' in config file {config} (did you mean \"learning_rate\"?)"
    config.write_text("seq_len: sixty-four\n")
    with pytest.raises(BabyLlamaError) as err:
        explicit_values(argparse.Namespace(config=str(config)), TrainConfig, ModelConfig)
    assert str(err.value) == f"option 'seq_len' in config file {config} must be int, got 'sixty-four'"


def test_resuming_with_a_changed_model_shape(run2):
    before = snapshot(run2)
    with pytest.raises(BabyLlamaError) as err:
        pretrain_tiny(run2.parent, run2.parent, "r", resume_from_checkpoint=str(run2), dim=128)
    checkpoint = run2 / "checkpoints" / "step_000002"
    assert str(err.value) == (f"cannot resume with a changed model shape: dim was 64, now 128. Start a new run (or "
                              f"--init_from {checkpoint}) instead")
    with pytest.raises(BabyLlamaError) as err:
        pretrain_tiny(run2.parent, run2.parent, "r", resume_from_checkpoint=str(run2), learning_rate=1.0,
                      **FAST)
    assert str(err.value).startswith("cannot change learning_rate when resuming")
    assert snapshot(run2) == before


def test_the_cli_prints_the_message_without_a_traceback(tmp_path, capsys):
    from babyllama import cli

    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(SystemExit) as exit_:
        cli.main(["prepare", "--data", str(path), "--out", str(tmp_path / "out"), "--vocab_size", "300"])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "Traceback" not in err
    assert err.strip() == (f"babyllama prepare: error: {path}, line 2: not valid JSON (Expecting property name "
                           f"enclosed in double quotes at column 2) (pass --skip_bad_lines to skip and count such "
                           f"lines)")
