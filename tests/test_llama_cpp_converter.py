"""llama.cpp's own converter (convert_hf_to_gguf.py, as vendored in the llama-cpp-python sdist on PyPI) on
babyllama's Hugging Face export.

Optional: the sdist is 77 MB. Give it with BABYLLAMA_LLAMA_CPP_SRC=PATH (the .tar.gz, or an unpacked llama.cpp
folder holding convert_hf_to_gguf.py), or let the test fetch it once into pytest's cache with
BABYLLAMA_FETCH_LLAMA_CPP=1 (`pip download --no-deps --no-binary :all: llama-cpp-python`). Nothing of llama.cpp
is kept in the repository.

- SentencePiece tokenizer (prepare --tokenizer_type sentencepiece): the converter takes its SentencePiece path
  (tokenizer.model); its GGUF must hold our vocabulary and ids, tokenize a sample text as babyllama does (llama.cpp's
  SPM algorithm, modelled here), and carry exactly the tensors of `babyllama export --format gguf`.
- Byte-level BPE (the default): the converter recognises a BPE pre-tokenizer only by a hash of the ids it gives on
  a fixed text, so a freshly trained one is refused; the test pins that documented limit (docs/interop.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
pytest.importorskip("sentencepiece")

SAMPLE = "Once upon a time, Lily saw 3 big dogs.  She said: \"Wow!\"\nThe end. naïve 🦙"


def _unpack(archive: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name and
                   any(part in m.name for part in ("/convert_hf_to_gguf.py", "/conversion/", "/gguf-py/"))]
        tar.extractall(into, members=members, filter="data")
    return next(into.glob("*/vendor/llama.cpp"))


@pytest.fixture(scope="module")
def converter(request) -> Path:
    given = os.environ.get("BABYLLAMA_LLAMA_CPP_SRC")
    # A cache that outlives the run, without pytest's cache plugin (CI runs with -p no:cacheprovider).
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "babyllama-tests" / "llama-cpp-python-sdist"
    cache.mkdir(parents=True, exist_ok=True)
    if given:
        path = Path(given)
        source = path if path.is_dir() else _unpack(path, cache / "unpacked")
    elif os.environ.get("BABYLLAMA_FETCH_LLAMA_CPP") == "1":
        found = list((cache / "unpacked").glob("*/vendor/llama.cpp"))
        if not found:
            done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                   "llama-cpp-python", "-d", str(cache)], capture_output=True, text=True, timeout=600)
            archives = sorted(cache.glob("llama_cpp_python-*.tar.gz"))
            if done.returncode != 0 or not archives:
                pytest.skip(f"could not download the llama-cpp-python sdist: {done.stderr.strip()[-300:]}")
            found = [_unpack(archives[-1], cache / "unpacked")]
        source = found[0]
    else:
        pytest.skip("llama.cpp's converter is optional (a 77 MB sdist): set BABYLLAMA_FETCH_LLAMA_CPP=1 to fetch it "
                    "from PyPI, or BABYLLAMA_LLAMA_CPP_SRC to a llama-cpp-python sdist or llama.cpp folder")
    script = source / "convert_hf_to_gguf.py"
    if not script.is_file():
        pytest.skip(f"no convert_hf_to_gguf.py in {source}")
    return script


def convert(script: Path, hf: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), str(hf), "--outfile", str(out), "--outtype", "f32"],
                          capture_output=True, text=True, timeout=600)


def spm_tokenize(text: str, tokens: list[str], scores: list[float], types: list[int]) -> list[int]:
    """llama.cpp's SentencePiece tokenizer: " " + text with spaces as "▁", characters (unknown ones as byte
    tokens), then the adjacent pair whose joined text is a normal token with the best score is merged, repeatedly."""
    normal = {t: i for i, t in enumerate(tokens) if types[i] in (gguf.TokenType.NORMAL, gguf.TokenType.USER_DEFINED)}
    ids = []
    for ch in (" " + text).replace(" ", "\u2581"):
        if ch in normal:
            ids.append(normal[ch])
        else:
            ids += [tokens.index(f"<0x{b:02X}>") for b in ch.encode("utf-8")]
    while True:
        best = None
        for i in range(len(ids) - 1):
            joined = normal.get(tokens[ids[i]] + tokens[ids[i + 1]])
            if joined is not None and (best is None or scores[joined] > best[0]):
                best = (scores[joined], i, joined)
        if best is None:
            return ids
        ids[best[1]:best[1] + 2] = [best[2]]


def test_converter_takes_the_sentencepiece_path_and_matches_babyllama(converter, tinystories, tmp_path):
    from test_sharing import make_run

    from babyllama.data.sentencepiece import train_sentencepiece
    from babyllama.export.gguf import export_gguf
    from babyllama.export.hf import export_hf

    text = (tinystories / "train.txt").read_text(encoding="utf-8")[:300_000]
    tokenizer = train_sentencepiece(text.split("\n"), 400, show_progress=False)
    run = make_run(tmp_path, tokenizer, "sp", "pretrain")
    hf = export_hf(run, tmp_path / "hf")
    assert (hf / "tokenizer.model").is_file()
    done = convert(converter, hf, tmp_path / "theirs.gguf")
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = gguf.GGUFReader(tmp_path / "theirs.gguf")
    ours = gguf.GGUFReader(export_gguf(run, tmp_path / "ours.gguf", "f32"))
    field = lambda reader, key: reader.fields[key].contents()  # noqa: E731
    assert field(theirs, "tokenizer.ggml.model") == "llama"  # the SentencePiece path
    tokens, scores = field(theirs, "tokenizer.ggml.tokens"), field(theirs, "tokenizer.ggml.scores")
    assert tokens == field(ours, "tokenizer.ggml.tokens")
    assert (field(theirs, "tokenizer.ggml.bos_token_id"), field(theirs, "tokenizer.ggml.eos_token_id")) == (1, 2)
    types = field(theirs, "tokenizer.ggml.token_type")
    for sample in (SAMPLE, "Tom and Sue played in the park."):
        assert spm_tokenize(sample, tokens, scores, types) == tokenizer.encode(sample), sample
    # the same weights, in the same (llama.cpp rotary) layout
    ours_tensors = {t.name: np.asarray(t.data) for t in ours.tensors}
    theirs_tensors = {t.name: np.asarray(t.data) for t in theirs.tensors}
    assert set(theirs_tensors) == set(ours_tensors)
    for name, value in ours_tensors.items():
        np.testing.assert_allclose(theirs_tensors[name].reshape(value.shape), value, rtol=0, atol=1e-6, err_msg=name)


def test_converter_refuses_a_freshly_trained_byte_level_bpe(converter, tinystories, tmp_path):
    from test_sharing import make_run

    from babyllama.data.tokenizer import train_tokenizer
    from babyllama.export.hf import export_hf

    text = (tinystories / "train.txt").read_text(encoding="utf-8")[:100_000]
    run = make_run(tmp_path, train_tokenizer(text.split("\n"), 300, show_progress=False), "bpe", "pretrain")
    done = convert(converter, export_hf(run, tmp_path / "hf"), tmp_path / "theirs.gguf")
    assert done.returncode != 0 and "BPE pre-tokenizer was not recognized" in done.stderr, done.stderr[-2000:]
