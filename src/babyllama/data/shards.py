"""Pretokenized shards: one flat memmapped token array per split, document offsets, and a manifest.

    <out>/tokenizer/          the tokenizer (AutoTokenizer loads it)
    <out>/train.bin           uint16 (uint32 past 65,536 ids) tokens: BOS + doc + EOS, doc after doc
    <out>/train.idx.npy       int64 offsets: document i is tokens[idx[i]:idx[i+1]]
    <out>/valid.bin, valid.idx.npy
    <out>/manifest.json       counts, dtype, tokenizer hash, sources, and the fingerprint that makes re-runs free
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from babyllama.data.sources import Corpus, ReadStats, iter_corpus
from babyllama.data.tokenizer import BabyTokenizer, load_tokenizer
from babyllama.errors import BabyLlamaError

FORMAT_VERSION = 1
BATCH_DOCS = 2048


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def file_fingerprint(paths: Iterable[Path]) -> list[dict]:
    out = []
    for p in paths:
        stat = Path(p).stat()
        out.append({"path": str(Path(p).resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return out


def fingerprint_of(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass
class SplitWriter:
    """Appends tokenized documents of one split to <name>.bin, atomically renamed on close."""

    folder: Path
    name: str
    dtype: np.dtype

    def __post_init__(self):
        self.tmp_path = self.folder / f".{self.name}.bin.tmp"
        self.handle = open(self.tmp_path, "wb")
        self.offsets = [0]
        self.text_bytes = 0

    def add(self, docs: list[str], token_lists: list[list[int]], bos: int, eos: int) -> None:
        pieces = []
        for doc, ids in zip(docs, token_lists):
            pieces.append(np.array([bos, *ids, eos], dtype=self.dtype))
            self.offsets.append(self.offsets[-1] + len(ids) + 2)
            self.text_bytes += len(doc.encode("utf-8"))
        if pieces:
            np.concatenate(pieces).tofile(self.handle)

    def close(self) -> dict:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        np.save(self.folder / f".{self.name}.idx.tmp.npy", np.array(self.offsets, dtype=np.int64))
        os.replace(self.tmp_path, self.folder / f"{self.name}.bin")
        os.replace(self.folder / f".{self.name}.idx.tmp.npy", self.folder / f"{self.name}.idx.npy")
        return {"documents": len(self.offsets) - 1, "tokens": self.offsets[-1], "text_bytes": self.text_bytes}

    def abort(self) -> None:
        self.handle.close()
        self.tmp_path.unlink(missing_ok=True)


def _batched(docs: Iterator[str], size: int) -> Iterator[list[str]]:
    batch = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_shards(corpus: Corpus, tokenizer: BabyTokenizer, out: Path, *, valid_fraction: float,
                 reader: dict, show_progress: bool = True) -> dict:
    """Tokenize every document (in parallel, inside `tokenizers`) into train/valid arrays; returns split stats."""
    from tqdm.auto import tqdm

    dtype = token_dtype(tokenizer.vocab_size)
    total_bytes = sum(p.stat().st_size for p in corpus.train + corpus.valid)
    holdout_every = round(1 / valid_fraction) if not corpus.valid else 0
    writers = {"train": SplitWriter(out, "train", dtype), "valid": SplitWriter(out, "valid", dtype)}
    stats = ReadStats()
    try:
        with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="tokenizing", disable=not show_progress) as bar:
            streams = [("train", corpus.train)] + ([("valid", corpus.valid)] if corpus.valid else [])
            seen = 0
            for split, paths in streams:
                for batch in _batched(iter_corpus(paths, stats=stats, **reader), BATCH_DOCS):
                    ids = tokenizer.encode_batch(batch)
                    if split == "train" and holdout_every:
                        # Deterministic held-out set: every k-th document of the training files.
                        keep = [(i + seen) % holdout_every != holdout_every - 1 for i in range(len(batch))]
                        seen += len(batch)
                        writers["train"].add([d for d, k in zip(batch, keep) if k],
                                             [t for t, k in zip(ids, keep) if k], tokenizer.bos_id, tokenizer.eos_id)
                        writers["valid"].add([d for d, k in zip(batch, keep) if not k],
                                             [t for t, k in zip(ids, keep) if not k], tokenizer.bos_id, tokenizer.eos_id)
                    else:
                        writers[split].add(batch, ids, tokenizer.bos_id, tokenizer.eos_id)
                    bar.update(sum(len(d.encode("utf-8")) for d in batch))
            bar.n = total_bytes
            bar.refresh()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    splits = {name: writer.close() for name, writer in writers.items()}
    for name, split in splits.items():
        if split["documents"] == 0:
            where = ", ".join(str(p) for p in (corpus.valid if name == "valid" and corpus.valid else corpus.train))
            hint = " (add more documents or raise --valid_fraction)" if name == "valid" else ""
            raise BabyLlamaError(f"no {name} documents in {where}: the files are empty or whitespace only{hint}")
    splits["read"] = {"bad_lines_skipped": stats.bad_lines, "empty_documents": stats.empty_documents,
                      "bad_line_examples": stats.bad_line_examples}
    return splits


class PretokenizedData:
    """A prepared data folder, opened read-only: memmapped splits, offsets, tokenizer and manifest."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        manifest_path = self.folder / "manifest.json"
        if not manifest_path.is_file():
            raise BabyLlamaError(f"{self.folder} is not a prepared data folder (no manifest.json); "
                                 f"create one with `babyllama prepare --data ... --out {self.folder}`")
        self.manifest = json.loads(manifest_path.read_text())
        if "splits" not in self.manifest or "tokenizer" not in self.manifest:  # e.g. a run folder's record
            what = "a run folder" if "kind" in self.manifest else "not one"
            raise BabyLlamaError(f"{self.folder} is not a prepared data folder ({what}: its manifest.json has no "
                                 f"shards); give the folder made by `babyllama prepare` (see `babyllama prepare "
                                 f"--help`)")
        self.tokenizer = load_tokenizer(self.folder / "tokenizer")
        if self.tokenizer.hash != self.manifest["tokenizer"]["hash"]:
            raise BabyLlamaError(f"{self.folder}: the shards were made with another tokenizer (hash "
                                 f"{self.manifest['tokenizer']['hash'][:12]} in manifest.json, "
                                 f"{self.tokenizer.hash[:12]} in tokenizer/); run `babyllama prepare` again")
        self.dtype = np.dtype(self.manifest["dtype"])

    def tokens(self, split: str) -> np.ndarray:
        path = self.folder / f"{split}.bin"
        if not path.is_file():
            raise BabyLlamaError(f"{path} is missing; run `babyllama prepare` again")
        expected = self.manifest["splits"][split]["tokens"]
        data = np.memmap(path, dtype=self.dtype, mode="r")
        if len(data) != expected:
            raise BabyLlamaError(f"{path} holds {len(data)} tokens but manifest.json says {expected}; "
                                 f"the file is damaged: run `babyllama prepare` again")
        return data

    def offsets(self, split: str) -> np.ndarray:
        return np.load(self.folder / f"{split}.idx.npy")

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]


def reuse_if_current(out: Path, fingerprint: str) -> Optional[dict]:
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return None
    files_present = all((out / f).is_file() for f in ("train.bin", "valid.bin", "tokenizer/tokenizer.json"))
    return manifest if manifest.get("fingerprint") == fingerprint and files_present else None
