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
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from babyllama.data.tokenizer import load_tokenizer
from babyllama.errors import BabyLlamaError

FORMAT_VERSION = 1


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
