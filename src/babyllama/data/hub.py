"""Hugging Face datasets as a document stream: `--data hf:OWNER/NAME`, read with `datasets` in streaming mode.

Nothing is downloaded whole: rows arrive shard by shard, so a 50 GB corpus never sits on disk twice or in memory,
and `--max_examples` / `--max_bytes` stop reading early. The known names are shortcuts to Hub datasets.

BABYLLAMA_HUB_MIRROR=FOLDER (for tests and for timing the online path offline) serves `hf:OWNER/NAME` from
FOLDER/OWNER/NAME/<split>*.{parquet,jsonl,json} through the same `datasets` streaming code, with datasets'
parquet/json builders in place of the Hub (and text-file datasets from FOLDER/OWNER/NAME/<file>.txt).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from babyllama.errors import BabyLlamaError

# name -> (repo id, train split, validation split, text files or None); the text is in the "text" column.
# Datasets published only as <|endoftext|>-separated text files are streamed file by file from the repository.
KNOWN_DATASETS = {
    "tinystories": ("roneneldan/TinyStories", "train", "validation", None),
    "tinystories-v2": ("roneneldan/TinyStories", "train", "validation",
                       {"train": "TinyStoriesV2-GPT4-train.txt", "validation": "TinyStoriesV2-GPT4-valid.txt"}),
    "tinystories-instruct": ("roneneldan/TinyStoriesInstruct", "train", "validation",
                             {"train": "TinyStories-Instruct-train.txt", "validation": "TinyStories-Instruct-valid.txt"}),
}
SEPARATOR = b"<|endoftext|>"
MIRROR_ENV = "BABYLLAMA_HUB_MIRROR"
BATCH_ROWS = 1000


@dataclass
class HubSource:
    repo: str
    subset: Optional[str]
    split: str
    valid_split: Optional[str]
    text_field: str
    revision: Optional[str]
    cache_dir: Optional[str] = None
    files: Optional[dict] = None  # split -> text file in the repository, for text-file datasets

    @property
    def origin(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"hf://datasets/{self.repo}{rev}" + (f" ({self.subset})" if self.subset else "")

    def fingerprint_parts(self) -> dict:
        parts = {"repo": self.repo, "subset": self.subset, "split": self.split, "valid_split": self.valid_split,
                 "text_field": self.text_field, "revision": self.revision, "files": self.files}
        mirror = os.environ.get(MIRROR_ENV)
        if mirror:
            files = sorted((Path(mirror) / self.repo).glob("*"))
            parts["mirror"] = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        return parts

    def documents(self, split: str, shuffle_seed: Optional[int] = None) -> Iterator[str]:
        """Stripped, non-empty texts of one split, streamed; shuffle_seed visits the shards in a seeded order."""
        if self.files:
            yield from self._text_file_documents(split)
            return
        dataset = self._open(split)
        if shuffle_seed is not None:
            dataset = dataset.shuffle(seed=shuffle_seed, buffer_size=10_000)
        try:
            for batch in dataset.iter(batch_size=BATCH_ROWS):
                if self.text_field not in batch:
                    raise BabyLlamaError(f"{self.origin} split '{split}' has no column '{self.text_field}' "
                                         f"(columns: {', '.join(batch)}); choose one with --text_field")
                for text in batch[self.text_field]:
                    if isinstance(text, str) and text.strip():
                        yield text.strip()
        except BabyLlamaError:
            raise
        except Exception as err:  # network and format errors come in many types; all mean the same here
            raise BabyLlamaError(f"reading {self.origin} split '{split}' failed: {type(err).__name__}: {err}") from None

    def _text_file_documents(self, split: str) -> Iterator[str]:
        """<|endoftext|>-separated stories of one text file, streamed (range requests on the Hub)."""
        if split not in self.files:
            raise BabyLlamaError(f"{self.origin} has no split '{split}' (splits: {', '.join(self.files)})")
        mirror = os.environ.get(MIRROR_ENV)
        if mirror:
            handle = open(Path(mirror) / self.repo / self.files[split], "rb")
        else:
            if not hub_reachable():
                raise BabyLlamaError(f"cannot reach the Hugging Face Hub to stream {self.repo}. Offline, point "
                                     f"--data at local files, e.g. --data ../shared/data/tinystories")
            from huggingface_hub import HfFileSystem

            rev = f"@{self.revision}" if self.revision else ""
            handle = HfFileSystem().open(f"datasets/{self.repo}{rev}/{self.files[split]}", "rb", block_size=1 << 24)
        with handle:
            pending = b""
            for block in iter(lambda: handle.read(1 << 22), b""):
                *stories, pending = (pending + block).split(SEPARATOR)
                for story in stories:
                    text = story.decode("utf-8", errors="replace").strip()
                    if text:
                        yield text
            text = pending.decode("utf-8", errors="replace").strip()
            if text:
                yield text

    def _open(self, split: str):
        import datasets

        mirror = os.environ.get(MIRROR_ENV)
        if mirror:
            return _open_mirror(Path(mirror) / self.repo, split, self.text_field)
        if not hub_reachable():
            raise BabyLlamaError(
                f"cannot reach the Hugging Face Hub to stream {self.repo}. Offline, point --data at local files, "
                f"e.g. --data ../shared/data/tinystories (a folder of train.txt / valid.txt), a .jsonl or .parquet file")
        try:
            return datasets.load_dataset(self.repo, self.subset, split=split, streaming=True,
                                         revision=self.revision, cache_dir=self.cache_dir)
        except Exception as err:
            raise BabyLlamaError(f"opening {self.origin} split '{split}' on the Hub failed: {type(err).__name__}: "
                                 f"{err}. Check --data, --subset, --data_split and --revision") from None


def _open_mirror(folder: Path, split: str, text_field: str):
    import datasets

    files = sorted(p for p in folder.glob(f"{split}*") if p.suffix in (".parquet", ".jsonl", ".json"))
    if not files:
        raise BabyLlamaError(f"{MIRROR_ENV}: no {split}*.parquet/.jsonl files in {folder}")
    builder = "parquet" if files[0].suffix == ".parquet" else "json"
    return datasets.load_dataset(builder, data_files={split: [str(f) for f in files]}, split=split, streaming=True)


def hub_reachable(host: str = "huggingface.co", timeout: float = 4.0) -> bool:
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_source(data: str, *, subset: Optional[str], split: str, valid_split: Optional[str], text_field: str,
               revision: Optional[str], cache_dir: Optional[str]) -> Optional[HubSource]:
    """--data as a Hub dataset (hf:OWNER/NAME or a known name), or None when it names something else."""
    if data.lower() in KNOWN_DATASETS:
        repo, train_split, known_valid, files = KNOWN_DATASETS[data.lower()]
        return HubSource(repo, subset, split if split != "train" else train_split, valid_split or known_valid,
                         text_field, revision, cache_dir, files)
    if data.startswith("hf:"):
        repo = data[3:].strip("/")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise BabyLlamaError(f"--data {data}: write a Hub dataset as hf:OWNER/NAME, e.g. hf:roneneldan/TinyStories")
        return HubSource(repo, subset, split, valid_split, text_field, revision, cache_dir)
    return None
