"""A fair sample of a large corpus for tokenizer training: spread over all of it, not its first N bytes.

Local files are sampled in blocks at evenly spaced byte offsets (a seek each, so a 50 GB corpus is not read to
sample 200 MB of it): each block yields the whole documents that start inside it. A Hub stream is read with
its shards in a seeded order. The sample's own fingerprint (sha256 of the documents, their count and bytes) goes
into the manifest, so a re-run can show it trained on the same text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from babyllama.data.sources import STORY_SEPARATOR, _contains, read_documents

BLOCK_BYTES = 1 << 20


@dataclass
class SampleRecord:
    """Documents pass through it on their way to the trainer; it keeps their fingerprint."""

    method: str
    documents: int = 0
    bytes: int = 0
    _hash: "hashlib._Hash" = field(default_factory=hashlib.sha256, repr=False)

    def track(self, docs: Iterable[str], max_bytes: int) -> Iterator[str]:
        for doc in docs:
            raw = doc.encode("utf-8")
            self._hash.update(len(raw).to_bytes(8, "little") + raw)
            self.documents += 1
            self.bytes += len(raw)
            yield doc
            if self.bytes >= max_bytes:
                return

    def as_dict(self) -> dict:
        return {"method": self.method, "documents": self.documents, "bytes": self.bytes,
                "sha256": self._hash.hexdigest()}


def _block_documents(path: Path, start: int, length: int, text_field: str, separator: bytes) -> Iterator[str]:
    """Documents that start within [start, start + length) of a .txt/.jsonl file."""
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(length)
        rest = b""
        while True:  # finish the last document of the block
            more = handle.read(1 << 16)
            cut = more.find(separator)
            if cut >= 0 or not more:
                rest += more[:cut] if cut >= 0 else more
                break
            rest += more
    pieces = (data + rest).split(separator)
    if start > 0:
        pieces = pieces[1:]  # the first piece began before the block
    for raw in pieces:
        text = raw.decode("utf-8", errors="ignore")
        if separator == b"\n":
            try:
                record = json.loads(text) if text.strip() else None
            except json.JSONDecodeError:
                continue
            text = record.get(text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                continue
        if text.strip():
            yield text.strip()


def spread_sample(paths: list[Path], max_bytes: int, text_field: str,
                  skip_bad_lines: bool = True) -> tuple[Iterator[str], str]:
    """Documents spread evenly over the files, about max_bytes of them; and how they were chosen."""
    total = sum(p.stat().st_size for p in paths)
    seekable = all(p.suffix.lower() in (".txt", ".jsonl", ".json") for p in paths)
    if total <= max_bytes or not seekable:
        reader = (d for p in paths for d in read_documents(p, text_field=text_field, skip_bad_lines=skip_bad_lines))
        return reader, ("whole corpus" if total <= max_bytes else "first documents (parquet is not sampled)")
    block_bytes = max(4096, min(BLOCK_BYTES, max_bytes // 64))  # at least 64 places, even for a small sample
    blocks = max(1, max_bytes // block_bytes)
    stride = total / blocks

    def documents() -> Iterator[str]:
        offsets, base = [], 0
        for path in paths:
            size = path.stat().st_size
            if path.suffix.lower() == ".txt":  # as read_documents splits it: stories, else paragraphs
                separator = STORY_SEPARATOR.encode() if _contains(path, STORY_SEPARATOR) else b"\n\n"
            else:
                separator = b"\n"
            offsets.append((path, base, size, separator))
            base += size
        for i in range(blocks):
            position = int(i * stride)
            for path, first, size, separator in offsets:
                if first <= position < first + size:
                    yield from _block_documents(path, position - first, block_bytes, text_field, separator)
                    break

    return documents(), f"{blocks} blocks of {block_bytes / 1e6:g} MB at evenly spaced offsets"
