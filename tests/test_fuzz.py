"""Fuzzing with hypothesis: the corpus readers, the config loader and the SFT / preference readers get thousands
of generated files; only our own clear BabyLlamaError may come out, never a traceback of another type."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from babyllama.errors import BabyLlamaError

FUZZ = settings(max_examples=1000, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SCRATCH = Path(tempfile.mkdtemp(prefix="babyllama-fuzz-"))

# JSON values of every type (flat, so generation stays fast), with the field names the readers look for.
FIELDS = st.sampled_from(["text", "messages", "role", "content", "instruction", "input", "output", "prompt",
                          "completion", "chosen", "rejected", "story", ""])
SCALARS = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(width=32) | st.text(max_size=12)
ROLES = st.sampled_from(["system", "user", "assistant", "tool", ""])
MESSAGE = st.fixed_dictionaries({"role": ROLES, "content": SCALARS}) | st.dictionaries(FIELDS, SCALARS, max_size=2)
JSON = SCALARS | st.lists(SCALARS, max_size=3)
RECORD = st.dictionaries(FIELDS, JSON | st.lists(MESSAGE, max_size=2), max_size=4)


def _line(record_or_noise) -> bytes:
    if isinstance(record_or_noise, bytes):
        return record_or_noise.replace(b"\n", b" ")
    return json.dumps(record_or_noise).encode()


LINES = st.lists(st.one_of(RECORD.map(_line), JSON.map(_line), st.binary(max_size=24).map(_line)), max_size=5)


def _write(name: str, content: bytes) -> Path:
    path = SCRATCH / name
    path.write_bytes(content)
    return path


# --------------------------------------------------------------------------- corpus readers


@FUZZ
@given(lines=LINES, skip=st.booleans())
def test_jsonl_reader(lines, skip):
    from babyllama.data.sources import ReadStats, read_documents

    path = _write("corpus.jsonl", b"\n".join(lines))
    stats = ReadStats()
    try:
        docs = list(read_documents(path, skip_bad_lines=skip, stats=stats))
    except BabyLlamaError as err:
        assert not skip and f"{path}, line " in str(err)  # skipping never raises; each error names file and line
        return
    assert all(isinstance(d, str) and d and d == d.strip() for d in docs)
    assert stats.bad_lines == 0 or skip


@FUZZ
@given(content=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
       separator=st.booleans())
def test_txt_reader(content, separator):
    from babyllama.data.sources import read_documents

    if separator:
        content = content.replace(b"o", b"<|endoftext|>")
    path = _write("corpus.txt", content)
    try:
        docs = list(read_documents(path))
    except BabyLlamaError as err:
        assert "invalid UTF-8" in str(err)
        return
    assert all(d and d == d.strip() and "<|endoftext|>" not in d for d in docs)


@settings(FUZZ, max_examples=100)
@given(content=st.binary(max_size=200))
def test_parquet_reader_on_garbage(content):
    from babyllama.data.sources import read_documents

    path = _write("corpus.parquet", b"PAR1" + content)
    with pytest.raises(BabyLlamaError, match="not a readable parquet file"):
        list(read_documents(path))


# --------------------------------------------------------------------------- config loader


def _validate_config(path: Path) -> None:
    """The path a `--config` file takes in `babyllama pretrain` up to the first step: keys, types, checks."""
    import argparse

    from babyllama.commands.common import explicit_values
    from babyllama.config import ModelConfig, TrainConfig, preset_model

    train_values, model_values = explicit_values(argparse.Namespace(config=str(path)), TrainConfig, ModelConfig)
    cfg = TrainConfig(**train_values)
    for key, default in dict(per_device_train_batch_size=8, seq_len=64, learning_rate=1e-3, warmup_ratio=0.0).items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, default)  # what the device recipe fills in
    cfg.validate()
    model = ModelConfig(**{**preset_model(cfg.preset), **model_values, "vocab_size": 512})
    model.validate()
    # Whatever passed must be a usable configuration.
    assert cfg.learning_rate > 0 and math.isfinite(cfg.learning_rate) and model.dim % model.n_heads == 0


def _config_values():
    from babyllama.config import ModelConfig, TrainConfig, field_names

    keys = st.sampled_from(sorted(field_names(TrainConfig, ModelConfig))) | st.text(max_size=12) | st.integers()
    values = SCALARS | st.lists(SCALARS, max_size=3) | st.dictionaries(st.text(max_size=4), SCALARS, max_size=2) | \
        st.sampled_from(["260k", "15m", "cosine", "none", "tensorboard", "true", "1e-3", "-1", ".nan", "0"])
    return st.dictionaries(keys, values, max_size=6)


@FUZZ
@given(values=_config_values())
@example(values={"report_to": False})  # once crashed the did-you-mean hint (a bool is not a string)
def test_config_loader_structured(values):
    path = _write("config.yaml", yaml.safe_dump(values, allow_unicode=True).encode("utf-8"))
    try:
        _validate_config(path)
    except BabyLlamaError:
        pass


@FUZZ
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
       suffix=st.sampled_from([".yaml", ".json"]))
def test_config_loader_raw(content, suffix):
    path = _write("config" + suffix, content)
    try:
        _validate_config(path)
    except BabyLlamaError:
        pass


# --------------------------------------------------------------------------- SFT and preference readers


@FUZZ
@given(lines=LINES, suffix=st.sampled_from([".jsonl", ".json", ".txt"]), as_list=st.booleans())
def test_sft_and_preference_readers(lines, suffix, as_list):
    from babyllama.tune.data import read_records, to_preference_examples, to_sft_examples

    if suffix == ".json" and as_list:
        content = b"[" + b",".join(lines) + b"]"
    else:
        content = b"\n".join(lines)
    path = _write("sft" + suffix, content)
    try:
        records = read_records(str(path))
    except BabyLlamaError:
        return
    for convert in (to_sft_examples, to_preference_examples):
        try:
            examples, _ = convert(records, system_prompt="Be brief.")
        except BabyLlamaError:
            continue
        assert examples
