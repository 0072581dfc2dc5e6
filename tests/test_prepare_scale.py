"""prepare at scale: parallel workers, kill-and-resume, fair tokenizer samples, Hub datasets through `datasets`."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from babyllama.data.prepare import STAGING, PrepareConfig, prepare
from babyllama.data.sample import spread_sample
from babyllama.data.sources import read_documents
from babyllama.errors import BabyLlamaError

REPO = Path(__file__).resolve().parents[1]
SHARD_FILES = ("train.bin", "train.idx.npy", "valid.bin", "valid.idx.npy", "tokenizer/tokenizer.json")


def _same_files(a: Path, b: Path) -> None:
    for name in SHARD_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _quiet(**kw) -> PrepareConfig:
    return PrepareConfig(disable_tqdm=True, **kw)


@pytest.fixture(scope="module")
def reference(prepared_512, tinystories, tmp_path_factory) -> Path:
    """The shared stories encoded in one uninterrupted run, in 2 worker processes."""
    out = tmp_path_factory.mktemp("ref") / "ref"
    prepare(_quiet(data=str(tinystories), tokenizer=str(prepared_512 / "tokenizer"), out=str(out), num_proc=2,
                   chunk_mb=0.5), log=lambda _: None)
    return out


def test_one_worker_and_many_give_identical_shards(reference, prepared_512, tinystories, tmp_path):
    one = prepare(_quiet(data=str(tinystories), tokenizer=str(prepared_512 / "tokenizer"), out=str(tmp_path / "one"),
                         num_proc=1, chunk_mb=2), log=lambda _: None)
    _same_files(one, reference)
    # and the same tokens as the original single-process writer laid out (prepared_512 trained this tokenizer)
    _same_files(prepared_512, reference)
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["encoder"]["kind"] == "tiktoken" and manifest["encoder"]["num_proc"] == 2
    assert not (reference / STAGING).exists()


def test_killed_prepare_resumes_to_identical_shards(reference, prepared_512, tinystories, tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "babyllama", "prepare", "--data", str(tinystories), "--out", str(out),
               "--tokenizer", str(prepared_512 / "tokenizer"), "--num_proc", "1", "--chunk_mb", "0.1",
               "--encoder", "tokenizers", "--disable_tqdm"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    progress = out / STAGING / "progress.json"
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None:
        try:
            if json.loads(progress.read_text())["chunks"] >= 5:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    assert child.poll() is None, f"prepare ended before it could be killed: {child.stderr.read().decode()[-2000:]}"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    committed = json.loads(progress.read_text())["chunks"]
    assert 5 <= committed and not (out / "manifest.json").exists()

    messages = []
    prepare(_quiet(data=str(tinystories), tokenizer=str(prepared_512 / "tokenizer"), out=str(out), num_proc=2,
                   chunk_mb=0.1), log=messages.append)
    assert any("taking over" in m for m in messages)
    resumed = next(m for m in messages if m.startswith("resuming:"))
    assert int(resumed.split()[1]) == committed
    _same_files(out, reference)
    assert not (out / STAGING).exists()


def test_staging_of_other_inputs_is_cleaned_and_a_live_owner_refused(prepared_512, tinystories, tmp_path):
    out = tmp_path / "o"
    stale = out / STAGING
    stale.mkdir(parents=True)
    (stale / "owner.json").write_text(json.dumps({"pid": 999_999_999, "host": os.uname().nodename,
                                                  "fingerprint": "other"}))
    (stale / "train.bin").write_bytes(b"junk")
    cfg = _quiet(data=str(tinystories / "valid.txt"), tokenizer=str(prepared_512 / "tokenizer"), out=str(out),
                 num_proc=1)
    prepare(cfg, log=lambda _: None)
    assert not stale.exists() and (out / "manifest.json").is_file()

    (out / "manifest.json").unlink()
    stale.mkdir()
    (stale / "owner.json").write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename,
                                                  "fingerprint": "x"}))
    with pytest.raises(BabyLlamaError, match=f"another prepare \\(process {os.getppid()}\\) is writing"):
        prepare(cfg, log=lambda _: None)


def test_tokenizer_sample_is_spread_over_the_corpus(tmp_path):
    path = tmp_path / "big.txt"
    with open(path, "w") as f:
        for i in range(40_000):
            f.write(f"story number {i:06d} " + "word " * 40 + "\n<|endoftext|>\n")
    docs, method = spread_sample([path], 300_000, "text")
    numbers = [int(d.split()[2]) for d in docs]
    assert "evenly spaced" in method
    assert min(numbers) < 1000 and max(numbers) > 39_000  # from the start to the end, not the first N bytes
    assert len(numbers) == len(set(numbers)) and all(a < b for a, b in zip(numbers, numbers[1:]))


def test_manifest_records_the_tokenizer_sample(prepared_512):
    sample = json.loads((prepared_512 / "manifest.json").read_text())["tokenizer"]["sample"]
    assert sample["documents"] > 6000 and len(sample["sha256"]) == 64 and sample["method"] == "whole corpus"


# ------------------------------------------------------------------ Hub datasets, served from local files


@pytest.fixture()
def mirror(tinystories, tmp_path, monkeypatch) -> Path:
    """hf:local/stories served by the same `datasets` streaming code, from parquet files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "mirror" / "local" / "stories"
    folder.mkdir(parents=True)
    train = list(read_documents(tinystories / "train.txt"))[:1500]
    valid = list(read_documents(tinystories / "valid.txt"))
    pq.write_table(pa.table({"story": train[:700]}), folder / "train-00000.parquet")
    pq.write_table(pa.table({"story": train[700:]}), folder / "train-00001.parquet")
    pq.write_table(pa.table({"story": valid}), folder / "validation-00000.parquet")
    monkeypatch.setenv("BABYLLAMA_HUB_MIRROR", str(tmp_path / "mirror"))
    return folder


def test_hub_dataset_streams_with_a_slice(mirror, prepared_512, tmp_path):
    out = prepare(_quiet(data="hf:local/stories", text_field="story", valid_split="validation", max_examples=1000,
                         tokenizer=str(prepared_512 / "tokenizer"), out=str(tmp_path / "hub"), num_proc=1),
                  log=lambda _: None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["documents"] == 1000 and manifest["splits"]["valid"]["documents"] == 220
    assert manifest["sources"]["hub"]["repo"] == "local/stories"
    tokens = np.fromfile(out / "train.bin", dtype=np.uint16)
    assert len(tokens) == manifest["splits"]["train"]["tokens"]

    messages = []
    prepare(_quiet(data="hf:local/stories", text_field="story", valid_split="validation", max_examples=1000,
                   tokenizer=str(prepared_512 / "tokenizer"), out=str(out), num_proc=1), log=messages.append)
    assert "reusing" in messages[0]
    by_bytes = prepare(_quiet(data="hf:local/stories", text_field="story", max_bytes=200_000, vocab_size=300,
                              out=str(tmp_path / "bytes"), num_proc=1), log=lambda _: None)
    manifest = json.loads((by_bytes / "manifest.json").read_text())
    read = manifest["splits"]["train"]["text_bytes"] + manifest["splits"]["valid"]["text_bytes"]
    assert 200_000 <= read < 203_000  # the document that crosses the limit is the last one
    assert manifest["tokenizer"]["sample"]["method"] == "the slice, from its start"


def test_hub_errors_are_clear(mirror, tmp_path):
    with pytest.raises(BabyLlamaError, match="no column 'text' \\(columns: story\\); choose one with --text_field"):
        prepare(_quiet(data="hf:local/stories", vocab_size=300, out=str(tmp_path / "a")), log=lambda _: None)
    with pytest.raises(BabyLlamaError, match="write a Hub dataset as hf:OWNER/NAME"):
        prepare(_quiet(data="hf:nope", out=str(tmp_path / "b")), log=lambda _: None)
    with pytest.raises(BabyLlamaError, match="apply to Hub datasets"):
        prepare(_quiet(data=str(mirror), subset="x", out=str(tmp_path / "c")), log=lambda _: None)


def test_text_file_shortcut_streams_stories(tinystories, tmp_path, monkeypatch, prepared_512):
    repo = tmp_path / "mirror" / "roneneldan" / "TinyStories"
    repo.mkdir(parents=True)
    (repo / "TinyStoriesV2-GPT4-train.txt").write_bytes((tinystories / "train.txt").read_bytes())
    (repo / "TinyStoriesV2-GPT4-valid.txt").write_bytes((tinystories / "valid.txt").read_bytes())
    monkeypatch.setenv("BABYLLAMA_HUB_MIRROR", str(tmp_path / "mirror"))
    out = prepare(_quiet(data="tinystories-v2", tokenizer=str(prepared_512), out=str(tmp_path / "v2"), num_proc=1,
                         max_examples=500), log=lambda _: None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["documents"] == 500 and manifest["splits"]["valid"]["documents"] == 220
    valid = np.fromfile(out / "valid.bin", dtype=np.uint16)
    assert np.array_equal(valid, np.fromfile(prepared_512 / "valid.bin", dtype=np.uint16))


def test_a_fast_encoder_that_disagrees_is_not_used(monkeypatch, prepared_512, tinystories, tmp_path):
    from babyllama.data import encode

    original = encode.Encoder.encode
    monkeypatch.setattr(encode.Encoder, "encode",
                        lambda self, text: original(self, text) + ([0] if self.kind == "tiktoken" else []))
    messages = []
    out = prepare(_quiet(data=str(tinystories / "valid.txt"), tokenizer=str(prepared_512), out=str(tmp_path / "d"),
                         num_proc=1), log=messages.append)
    assert json.loads((out / "manifest.json").read_text())["encoder"]["kind"] == "tokenizers"
    assert any("tiktoken disagrees with tokenizers" in m for m in messages)
    with pytest.raises(BabyLlamaError, match="--encoder tiktoken gives other ids"):
        prepare(_quiet(data=str(tinystories / "valid.txt"), tokenizer=str(prepared_512), out=str(tmp_path / "e"),
                       num_proc=1, encoder="tiktoken"), log=lambda _: None)
