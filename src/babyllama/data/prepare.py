"""`babyllama prepare`: corpus -> tokenizer -> shards, in one resumable, reusable step."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from babyllama import __version__
from babyllama.config import opt
from babyllama.data.shards import (FORMAT_VERSION, file_fingerprint, fingerprint_of, reuse_if_current, token_dtype,
                                   write_shards)
from babyllama.data.sources import iter_corpus, resolve_corpus
from babyllama.data.tokenizer import MIN_VOCAB_SIZE, load_tokenizer, train_tokenizer
from babyllama.errors import BabyLlamaError


@dataclass
class PrepareConfig:
    data: str = opt("tinystories", "'tinystories' (Hugging Face Hub), or a local .txt/.jsonl/.parquet file, folder or glob")
    out: Optional[str] = opt(None, "output folder (default: data/<name>-<vocab_size>)")
    vocab_size: int = opt(2048, "tokenizer vocabulary size, special tokens included")
    tokenizer: Optional[str] = opt(None, "reuse this tokenizer folder instead of training one")
    text_field: str = opt("text", "field holding the text in .jsonl and .parquet files")
    valid_fraction: float = opt(0.01, "share of documents held out for validation when no valid* file exists")
    tokenizer_max_bytes: int = opt(200_000_000, "train the tokenizer on at most this much text")
    skip_bad_lines: bool = opt(False, "skip (and count) malformed JSON lines instead of stopping")
    cache_dir: Optional[str] = opt(None, "Hugging Face cache folder for Hub downloads")
    disable_tqdm: bool = opt(False, "no progress bars")


def validate(cfg: PrepareConfig) -> None:
    if cfg.tokenizer is None and cfg.vocab_size < MIN_VOCAB_SIZE:
        raise BabyLlamaError(f"--vocab_size {cfg.vocab_size} is too small: the 256 bytes and the special tokens "
                             f"need at least {MIN_VOCAB_SIZE}")
    if not 0 < cfg.valid_fraction < 0.5:
        raise BabyLlamaError(f"--valid_fraction must be in (0, 0.5), got {cfg.valid_fraction}")
    if cfg.tokenizer_max_bytes <= 0:
        raise BabyLlamaError(f"--tokenizer_max_bytes must be positive, got {cfg.tokenizer_max_bytes}")


def _limited(docs, max_bytes: int):
    total = 0
    for doc in docs:
        yield doc
        total += len(doc)
        if total >= max_bytes:
            return


def default_out(cfg: PrepareConfig) -> Path:
    name = Path(cfg.data.rstrip("/")).stem.lower() or "corpus"
    return Path("data") / f"{name}-{cfg.vocab_size}"


def _commit(work: Path, out: Path) -> None:
    """Move a complete preparation from `work` into `out`; manifest.json goes first out and last in, so a
    folder caught halfway (a kill) reads as unprepared, never as complete with mixed files."""
    (out / "manifest.json").unlink(missing_ok=True)
    for name in ("train.bin", "train.idx.npy", "valid.bin", "valid.idx.npy"):
        os.replace(work / name, out / name)
    shutil.rmtree(out / "tokenizer", ignore_errors=True)
    os.replace(work / "tokenizer", out / "tokenizer")
    os.replace(work / "manifest.json", out / "manifest.json")


def damaged(out: Path, manifest: dict) -> str:
    """What is wrong with a prepared folder whose manifest matches its inputs ('' when intact): a shard of
    the wrong size, a missing offsets file or a tokenizer that is not the one the shards were made with."""
    try:
        itemsize = np.dtype(manifest["dtype"]).itemsize
        for split in ("train", "valid"):
            size = (out / f"{split}.bin").stat().st_size
            if size != manifest["splits"][split]["tokens"] * itemsize:
                return f"{split}.bin holds {size // itemsize} tokens, manifest.json says " \
                       f"{manifest['splits'][split]['tokens']}"
            if not (out / f"{split}.idx.npy").is_file():
                return f"{split}.idx.npy is missing"
        if load_tokenizer(out / "tokenizer").hash != manifest["tokenizer"]["hash"]:
            return "tokenizer/ is not the tokenizer the shards were made with"
    except (OSError, KeyError, TypeError, ValueError, BabyLlamaError) as err:
        return f"{type(err).__name__}: {err}"
    return ""


def prepare(cfg: PrepareConfig, log=print) -> Path:
    validate(cfg)
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    corpus = resolve_corpus(cfg.data, cfg.cache_dir)
    reader = dict(text_field=cfg.text_field, skip_bad_lines=cfg.skip_bad_lines)
    given_tokenizer = load_tokenizer(cfg.tokenizer) if cfg.tokenizer else None
    parts = {
        "format_version": FORMAT_VERSION,
        "train": file_fingerprint(corpus.train), "valid": file_fingerprint(corpus.valid),
        "vocab_size": None if given_tokenizer else cfg.vocab_size,
        "tokenizer": given_tokenizer.hash if given_tokenizer else None,
        "text_field": cfg.text_field, "valid_fraction": None if corpus.valid else cfg.valid_fraction,
        "tokenizer_max_bytes": cfg.tokenizer_max_bytes, "skip_bad_lines": cfg.skip_bad_lines,
    }
    fingerprint = fingerprint_of(parts)
    if (manifest := reuse_if_current(out, fingerprint)) is not None:
        if not (damage := damaged(out, manifest)):
            log(f"{out} is up to date with its inputs: reusing it ({manifest['splits']['train']['tokens']:,} "
                f"train tokens)")
            return out
        log(f"{out} is damaged ({damage}): preparing it again")

    # Everything is written into a staging folder inside `out` and moved into place only when complete:
    # bad input found halfway (an empty split, a malformed line) never damages shards already there.
    created = not out.exists()
    work = out / f".prepare-{os.getpid()}"
    try:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    except OSError as err:
        raise BabyLlamaError(f"cannot write the output folder {out}: {err.strerror or err}; "
                             f"choose another --out") from None
    try:
        started = time.time()
        if given_tokenizer:
            tokenizer = given_tokenizer
            log(f"reusing tokenizer {cfg.tokenizer} ({tokenizer.vocab_size} tokens)")
        else:
            log(f"training a byte-level BPE tokenizer with {cfg.vocab_size} tokens on {', '.join(map(str, corpus.train))}")
            if next(iter_corpus(corpus.train, **reader), None) is None:  # say so before BPE finds "too small"
                raise BabyLlamaError(f"no train documents in {', '.join(map(str, corpus.train))}: the files are "
                                     f"empty or whitespace only")
            docs = _limited(iter_corpus(corpus.train, **reader), cfg.tokenizer_max_bytes)
            tokenizer = train_tokenizer(docs, cfg.vocab_size, show_progress=not cfg.disable_tqdm)
        tokenizer.save(work / "tokenizer")
        tokenizer_seconds = time.time() - started

        splits = write_shards(corpus, tokenizer, work, valid_fraction=cfg.valid_fraction, reader=reader,
                              show_progress=not cfg.disable_tqdm)
        manifest = {
            "babyllama_version": __version__,
            "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "origin": corpus.origin,
            "sources": {"train": [str(p) for p in corpus.train], "valid": [str(p) for p in corpus.valid]},
            "validation": "files" if corpus.valid else f"every {round(1 / cfg.valid_fraction)}th training document",
            "tokenizer": {"hash": tokenizer.hash, "vocab_size": tokenizer.vocab_size,
                          "trained": given_tokenizer is None, "from": cfg.tokenizer},
            "dtype": str(token_dtype(tokenizer.vocab_size)),
            "splits": {k: v for k, v in splits.items() if k in ("train", "valid")},
            "read": splits["read"],
            "config": {k: v for k, v in vars(cfg).items()},
            "seconds": {"tokenizer": round(tokenizer_seconds, 2), "total": round(time.time() - started, 2)},
            "fingerprint": fingerprint,
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
        _commit(work, out)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    train, valid = splits["train"], splits["valid"]
    log(f"wrote {out}: train {train['documents']:,} docs / {train['tokens']:,} tokens "
        f"({train['text_bytes'] / max(train['tokens'], 1):.2f} bytes/token), "
        f"valid {valid['documents']:,} docs / {valid['tokens']:,} tokens, in {time.time() - started:.1f}s")
    if splits["read"]["bad_lines_skipped"]:
        log(f"skipped {splits['read']['bad_lines_skipped']} malformed lines, e.g. {splits['read']['bad_line_examples'][0]}")
    return out
