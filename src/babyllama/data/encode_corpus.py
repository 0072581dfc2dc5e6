"""Tokenize a corpus into shards: in parallel, in bounded memory, resumable after a kill.

Documents stream from the source into chunks (a few MB of text each, cut at the same places on every run). Worker
processes encode chunks; the main process appends each chunk's tokens and document ends to the staging files in
chunk order and then records the chunk as committed in progress.json (written atomically). A run killed at any
point leaves files whose first `committed` bytes are valid: the next run with the same inputs truncates them to
that length, skips the committed chunks' documents (read, not encoded) and carries on, so its result is
byte-identical to an uninterrupted run. Memory holds at most 2 chunks per worker, whatever the corpus size.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy as np

from babyllama.data.encode import Encoder, pin_to_one_thread

SPLITS = ("train", "valid")
PROGRESS = "progress.json"


@dataclass
class Chunk:
    index: int
    stream: str  # "train" or "valid": the stream the documents came from
    first_document: int  # index of the first document within its stream (the held-out rule needs it)
    documents: list[str]


def chunked(streams: list[tuple[str, Iterable[str]]], chunk_bytes: int) -> Iterator[Chunk]:
    """Cut the streams into chunks of about chunk_bytes characters; a pure function of the documents."""
    index = 0
    for name, documents in streams:
        batch, size, first = [], 0, 0
        for position, doc in enumerate(documents):
            batch.append(doc)
            size += len(doc)
            if size >= chunk_bytes:
                yield Chunk(index, name, first, batch)
                index, batch, size, first = index + 1, [], 0, position + 1
        if batch:
            yield Chunk(index, name, first, batch)
            index += 1


# ---------------------------------------------------------------- worker side

_ENCODER: Optional[Encoder] = None


def _init_worker(encoder: Encoder) -> None:
    global _ENCODER
    pin_to_one_thread()
    _ENCODER = encoder


def encode_chunk(chunk: Chunk, encoder: Encoder, bos: int, eos: int, holdout_every: int, dtype: str) -> dict:
    """{split: (tokens, document lengths, text bytes)}: BOS + ids + EOS per document, split by the held-out rule."""
    parts = {split: ([], [], 0) for split in SPLITS}
    for offset, doc in enumerate(chunk.documents):
        split = chunk.stream
        if split == "train" and holdout_every and (chunk.first_document + offset) % holdout_every == holdout_every - 1:
            split = "valid"  # a deterministic held-out set: every k-th training document
        ids = encoder.encode(doc)
        pieces, lengths, text_bytes = parts[split]
        pieces.append(np.array([bos, *ids, eos], dtype=dtype))
        lengths.append(len(ids) + 2)
        parts[split] = (pieces, lengths, text_bytes + len(doc.encode("utf-8")))
    return {split: (np.concatenate(p) if p else np.zeros(0, dtype=dtype), np.array(n, dtype=np.int64), b)
            for split, (p, n, b) in parts.items()}


def _encode_in_worker(chunk: Chunk, bos: int, eos: int, holdout_every: int, dtype: str) -> dict:
    return encode_chunk(chunk, _ENCODER, bos, eos, holdout_every, dtype)


# ---------------------------------------------------------------- main side


@dataclass
class Progress:
    """What is committed in the staging folder: every number needed to truncate and continue."""

    fingerprint: str
    chunks: int = 0
    splits: dict = field(default_factory=lambda: {s: {"documents": 0, "tokens": 0, "text_bytes": 0} for s in SPLITS})

    def save(self, folder: Path) -> None:
        tmp = folder / f".{PROGRESS}.tmp"
        tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "chunks": self.chunks, "splits": self.splits}))
        os.replace(tmp, folder / PROGRESS)

    @classmethod
    def load(cls, folder: Path, fingerprint: str) -> Optional["Progress"]:
        try:
            raw = json.loads((folder / PROGRESS).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if raw.get("fingerprint") != fingerprint:
            return None
        return cls(fingerprint, raw["chunks"], raw["splits"])


class ShardFiles:
    """The staging files of one run: <split>.bin tokens and <split>.ends (int64 document ends, raw)."""

    def __init__(self, folder: Path, progress: Progress, itemsize: int):
        self.folder, self.progress = folder, progress
        self.handles = {}
        for split in SPLITS:
            committed = progress.splits[split]
            for suffix, size in ((".bin", committed["tokens"] * itemsize), (".ends", committed["documents"] * 8)):
                path = folder / f"{split}{suffix}"
                handle = open(path, "r+b" if path.exists() else "w+b")
                handle.truncate(size)  # whatever a killed run wrote past its last commit is dropped
                handle.seek(size)
                self.handles[split + suffix] = handle

    def append(self, encoded: dict) -> None:
        for split, (tokens, lengths, text_bytes) in encoded.items():
            if not len(lengths):
                continue
            done = self.progress.splits[split]
            tokens.tofile(self.handles[split + ".bin"])
            (done["tokens"] + np.cumsum(lengths)).astype(np.int64).tofile(self.handles[split + ".ends"])
            done["documents"] += len(lengths)
            done["tokens"] += int(lengths.sum())
            done["text_bytes"] += text_bytes

    def commit(self) -> None:
        for handle in self.handles.values():
            handle.flush()
            os.fsync(handle.fileno())
        self.progress.chunks += 1
        self.progress.save(self.folder)

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()


def finish_offsets(folder: Path, split: str) -> None:
    """<split>.ends -> <split>.idx.npy (a leading 0, then the ends), streamed: never the whole array in memory.
    The .ends file stays until the staging folder goes: a kill right after this still resumes correctly."""
    ends = folder / f"{split}.ends"
    count = ends.stat().st_size // 8
    with open(folder / f"{split}.idx.npy", "wb") as out, open(ends, "rb") as source:
        np.lib.format.write_array_header_1_0(out, {"descr": np.dtype(np.int64).str, "fortran_order": False,
                                                   "shape": (count + 1,)})
        np.zeros(1, dtype=np.int64).tofile(out)
        shutil.copyfileobj(source, out, 1 << 22)


def encode_corpus(streams: list[tuple[str, Iterable[str]]], encoder: Encoder, folder: Path, *, fingerprint: str,
                  bos: int, eos: int, dtype: np.dtype, holdout_every: int, num_proc: int, chunk_bytes: int,
                  on_chunk: Callable[[int, int], None] = lambda chunk_bytes, resumed: None,
                  log: Callable[[str], None] = print) -> dict:
    """Encode every chunk not yet committed in `folder`; returns per-split documents/tokens/text_bytes."""
    itemsize = np.dtype(dtype).itemsize
    progress = Progress.load(folder, fingerprint) or Progress(fingerprint)
    if not _files_hold(folder, progress, itemsize):
        log(f"the staging files in {folder} are shorter than their record: starting over")
        progress = Progress(fingerprint)
    if progress.chunks:
        log(f"resuming: {progress.chunks} chunks ({progress.splits['train']['tokens']:,} train tokens) "
            f"were committed by an earlier run")
    files = ShardFiles(folder, progress, itemsize)
    args = (bos, eos, holdout_every, np.dtype(dtype).str)
    pending_chunks = _uncommitted(chunked(streams, chunk_bytes), progress.chunks, on_chunk)
    try:
        if num_proc <= 1:
            for chunk in pending_chunks:
                files.append(encode_chunk(chunk, encoder, *args))
                files.commit()
                on_chunk(sum(len(d) for d in chunk.documents), False)
        else:
            _encode_parallel(pending_chunks, encoder, files, args, num_proc, on_chunk)
    finally:
        files.close()
    for split in SPLITS:
        finish_offsets(folder, split)
    return progress.splits


def _files_hold(folder: Path, progress: Progress, itemsize: int) -> bool:
    """Whether every staging file holds at least what progress.json says was committed to it."""
    for split in SPLITS:
        done = progress.splits[split]
        for suffix, size in ((".bin", done["tokens"] * itemsize), (".ends", done["documents"] * 8)):
            path = folder / f"{split}{suffix}"
            if size and (not path.is_file() or path.stat().st_size < size):
                return False
    return True


def _uncommitted(chunks: Iterator[Chunk], committed: int, on_chunk) -> Iterator[Chunk]:
    for chunk in chunks:
        if chunk.index < committed:  # read again to find where to continue, but not encoded again
            on_chunk(sum(len(d) for d in chunk.documents), True)
            continue
        yield chunk


def _encode_parallel(chunks: Iterator[Chunk], encoder: Encoder, files: ShardFiles, args: tuple, num_proc: int,
                     on_chunk) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may hold tokenizers' thread pool (tokenizer training), which fork would break.
    context = multiprocessing.get_context("spawn")
    in_flight: deque = deque()
    with ProcessPoolExecutor(num_proc, mp_context=context, initializer=_init_worker, initargs=(encoder,)) as pool:
        try:
            for chunk in chunks:
                size = sum(len(d) for d in chunk.documents)
                in_flight.append((pool.submit(_encode_in_worker, chunk, *args), size))
                del chunk
                while len(in_flight) >= 2 * num_proc:  # bounded: memory holds at most 2 chunks per worker
                    _write_oldest(in_flight, files, on_chunk)
            while in_flight:
                _write_oldest(in_flight, files, on_chunk)
        except BaseException:
            for future, _ in in_flight:
                future.cancel()
            raise


def _write_oldest(in_flight: deque, files: ShardFiles, on_chunk) -> None:
    future, size = in_flight.popleft()
    files.append(future.result())
    files.commit()
    on_chunk(size, False)
