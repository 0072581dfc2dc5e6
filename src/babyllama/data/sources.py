"""Where local documents come from: .txt / .jsonl / .parquet files (Hub datasets stream through data/hub.py).

A *source* is one file. `resolve_corpus` turns what the user typed (a file, a folder or a glob) into train and
validation sources; `read_documents` yields the documents of one source.
"""

from __future__ import annotations

import glob as globlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from babyllama.errors import BabyLlamaError

SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")
STORY_SEPARATOR = "<|endoftext|>"


@dataclass
class ReadStats:
    """What reading skipped, so it can be reported and recorded."""

    bad_lines: int = 0
    empty_documents: int = 0
    bad_line_examples: list = field(default_factory=list)


@dataclass
class Corpus:
    train: list[Path]
    valid: list[Path]  # empty: hold out a deterministic fraction of train instead
    origin: str  # what the user asked for, for the manifest


def _is_validation(path: Path) -> bool:
    return "valid" in path.stem.lower() or path.stem.lower() in ("val", "validation", "dev")


def _supported(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SUFFIXES


def _validation_beside(train_file: Path) -> list[Path]:
    """A `valid*` file beside the train file, preferring the one named like it (train -> valid)."""
    stem = train_file.stem
    if "train" in stem.lower():
        idx = stem.lower().index("train")
        twin = train_file.with_name(stem[:idx] + "valid" + stem[idx + 5:] + train_file.suffix)
        if twin.is_file():
            return [twin]
    candidates = sorted(p for p in train_file.parent.iterdir()
                        if p.suffix == train_file.suffix and p.stem.lower().startswith("valid") and p.is_file())
    return candidates[:1]


def resolve_corpus(data: str) -> Corpus:
    """Map --data to train and validation files."""
    path = Path(data).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if _supported(p))
        if not files:
            raise BabyLlamaError(f"folder {path} holds no {', '.join(SUFFIXES)} files (subfolders are not read)")
        train = [p for p in files if not _is_validation(p)]
        valid = [p for p in files if _is_validation(p)]
        if not train:
            raise BabyLlamaError(f"folder {path} holds only validation files ({', '.join(p.name for p in valid)})")
        # A folder holding both .txt and .jsonl copies of one corpus: keep the first format only.
        suffix = train[0].suffix
        train = [p for p in train if p.suffix == suffix]
        valid = [p for p in valid if p.suffix == suffix]
        return Corpus(train, valid, str(path))
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise BabyLlamaError(f"{path}: unsupported file type '{path.suffix}'; use {', '.join(SUFFIXES)}")
        return Corpus([path], _validation_beside(path), str(path))
    matches = sorted(Path(p) for p in globlib.glob(str(path)) if _supported(Path(p)))
    if matches:
        train = [p for p in matches if not _is_validation(p)] or matches
        valid = [p for p in matches if _is_validation(p) and p not in train]
        return Corpus(train, valid, data)
    from babyllama.data.hub import KNOWN_DATASETS

    names = ", ".join(KNOWN_DATASETS)
    raise BabyLlamaError(f"--data '{data}' is not a file, folder or glob that exists, nor a Hub dataset "
                         f"(hf:OWNER/NAME, or {names})")


def hub_reachable(host: str = "huggingface.co", timeout: float = 4.0) -> bool:
    """Kept here for the fine-tuning data reader; the Hub code lives in data/hub.py."""
    from babyllama.data.hub import hub_reachable as reachable

    return reachable(host, timeout)


# --------------------------------------------------------------------------- readers


def _decode(raw: bytes, path: Path, line_no: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BabyLlamaError(f"{path}, line {line_no}: invalid UTF-8 ({err.reason} at byte {err.start}); "
                             f"re-encode the file as UTF-8") from None


def _read_txt(path: Path, stats: ReadStats) -> Iterator[str]:
    """Stories separated by <|endoftext|>; a file without separators is split at blank lines."""
    separated = _contains(path, STORY_SEPARATOR)
    pending: list[str] = []
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            line = _decode(raw, path, line_no)
            if separated:
                while STORY_SEPARATOR in line:
                    before, line = line.split(STORY_SEPARATOR, 1)
                    pending.append(before)
                    yield from _emit(pending, stats)
                    pending = []
                pending.append(line)
            elif line.strip():
                pending.append(line)
            else:
                yield from _emit(pending, stats, count_empty=False)
                pending = []
    yield from _emit(pending, stats, count_empty=False)


def _contains(path: Path, needle: str) -> bool:
    """Whether the file holds needle, reading it in overlapping 16 MB chunks."""
    target, tail = needle.encode(), b""
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            if target in tail + chunk:
                return True
            tail = chunk[-len(target):]
    return False


def _emit(lines: list[str], stats: ReadStats, count_empty: bool = True) -> Iterator[str]:
    text = "".join(lines).strip()
    if text:
        yield text
    elif count_empty and lines:
        stats.empty_documents += 1


def _bad_line(path: Path, line_no: int, why: str, skip: bool, stats: ReadStats) -> None:
    message = f"{path}, line {line_no}: {why}"
    if not skip:
        raise BabyLlamaError(message + " (pass --skip_bad_lines to skip and count such lines)")
    stats.bad_lines += 1
    if len(stats.bad_line_examples) < 5:
        stats.bad_line_examples.append(message)


def _read_jsonl(path: Path, text_field: str, skip_bad_lines: bool, stats: ReadStats) -> Iterator[str]:
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                line = _decode(raw, path, line_no)
            except BabyLlamaError as err:
                _bad_line(path, line_no, str(err).split(": ", 1)[1], skip_bad_lines, stats)
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                _bad_line(path, line_no, f"not valid JSON ({err.msg} at column {err.colno})", skip_bad_lines, stats)
                continue
            if not isinstance(record, dict):
                _bad_line(path, line_no, f"expected a JSON object, got {type(record).__name__}", skip_bad_lines, stats)
                continue
            if text_field not in record:
                fields = ", ".join(map(str, list(record)[:8]))
                _bad_line(path, line_no, f"no field '{text_field}' (fields: {fields}); choose one with --text_field",
                          skip_bad_lines, stats)
                continue
            text = record[text_field]
            if not isinstance(text, str):
                _bad_line(path, line_no, f"field '{text_field}' is {type(text).__name__}, not a string",
                          skip_bad_lines, stats)
                continue
            text = text.strip()
            if text:
                yield text
            else:
                stats.empty_documents += 1


def _read_parquet(path: Path, text_field: str, stats: ReadStats) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:
        raise BabyLlamaError(f"{path}: not a readable parquet file ({err})") from None
    names = parquet.schema_arrow.names
    if text_field not in names:
        raise BabyLlamaError(f"{path}: no column '{text_field}' (columns: {', '.join(names)}); choose one with --text_field")
    for group in range(parquet.num_row_groups):
        column = parquet.read_row_group(group, columns=[text_field]).column(0)
        for value in column.to_pylist():
            if isinstance(value, str) and value.strip():
                yield value.strip()
            else:
                stats.empty_documents += 1


def read_documents(path: Path, text_field: str = "text", skip_bad_lines: bool = False,
                   stats: Optional[ReadStats] = None) -> Iterator[str]:
    """Yield the documents of one file, stripped of surrounding whitespace."""
    stats = stats if stats is not None else ReadStats()
    suffix = path.suffix.lower()
    if suffix == ".txt":
        yield from _read_txt(path, stats)
    elif suffix in (".jsonl", ".json"):
        yield from _read_jsonl(path, text_field, skip_bad_lines, stats)
    elif suffix == ".parquet":
        yield from _read_parquet(path, text_field, stats)
    else:
        raise BabyLlamaError(f"{path}: unsupported file type '{path.suffix}'; use {', '.join(SUFFIXES)}")


def iter_corpus(paths: list[Path], **reader) -> Iterator[str]:
    for path in paths:
        yield from read_documents(path, **reader)
