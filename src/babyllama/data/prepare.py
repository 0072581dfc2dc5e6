"""`babyllama prepare`: corpus -> tokenizer -> shards, in one resumable, reusable step.

The corpus streams from local files or a Hugging Face dataset; the tokenizer trains on a sample spread over all
of it; encoding runs in --num_proc processes with the fastest exact encoder (data/encode.py) and commits chunk by
chunk into a staging folder, so a killed run continues where it stopped (data/encode_corpus.py).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from babyllama import __version__
from babyllama.config import opt
from babyllama.data.encode import ENCODERS, fast_encoder, reference_encoder
from babyllama.data.encode_corpus import PROGRESS, encode_corpus
from babyllama.data.hub import KNOWN_DATASETS, HubSource, hub_source
from babyllama.data.sample import SampleRecord, spread_sample
from babyllama.data.shards import FORMAT_VERSION, file_fingerprint, fingerprint_of, reuse_if_current, token_dtype
from babyllama.data.sources import Corpus, ReadStats, iter_corpus, resolve_corpus
from babyllama.data.sentencepiece import train_sentencepiece
from babyllama.data.tokenizer import MIN_VOCAB_SIZE, TOKENIZER_TYPES, BabyTokenizer, load_tokenizer, train_tokenizer
from babyllama.errors import BabyLlamaError

STAGING = ".prepare-staging"
VERIFY_BYTES = 500_000  # compared with both encoders before encoding with the fast one (~0.3 s)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "added_tokens.json")

@dataclass
class PrepareConfig:
    data: str = opt("tinystories", "a Hub dataset (hf:OWNER/NAME, or " + ", ".join(KNOWN_DATASETS) +
                    "), or a local .txt/.jsonl/.parquet file, folder or glob")
    out: Optional[str] = opt(None, "output folder (default: data/<name>-<vocab_size>)")
    vocab_size: int = opt(2048, "tokenizer vocabulary size, special tokens included")
    tokenizer: Optional[str] = opt(None, "reuse this tokenizer: a tokenizer folder, or a prepared data folder (its "
                                         "tokenizer/), so that several folders share one tokenizer (mixtures)")
    text_field: str = opt("text", "field holding the text in .jsonl, .parquet and Hub datasets")
    subset: Optional[str] = opt(None, "Hub dataset configuration (subset), e.g. sample-10BT")
    data_split: str = opt("train", "split of a Hub dataset to train on")
    valid_split: Optional[str] = opt(None, "split of a Hub dataset to validate on (default: hold out --valid_fraction)")
    revision: Optional[str] = opt(None, "Hub revision (branch, tag or commit) to pin")
    max_examples: Optional[int] = opt(None, "use at most this many training documents")
    max_bytes: Optional[int] = opt(None, "use at most this much training text (bytes)")
    tokenizer_type: str = opt("bpe", "tokenizer to train: 'bpe' (byte-level BPE, Hugging Face tokenizers) or "
                              "'sentencepiece' (SentencePiece BPE with byte fallback, as Llama 2: tokenizer.model too)")
    valid_fraction: float = opt(0.01, "share of documents held out for validation when no valid* file exists")
    tokenizer_max_bytes: int = opt(200_000_000, "train the tokenizer on a sample of this much text, spread over the corpus")
    num_proc: Optional[int] = opt(None, "processes that encode (default: the CPU cores)")
    encoder: str = opt("auto", "auto (tiktoken where exact, else tokenizers), tiktoken or tokenizers")
    chunk_mb: float = opt(8.0, "text per committed chunk: what a killed run may have to encode again")
    skip_bad_lines: bool = opt(False, "skip (and count) malformed JSON lines instead of stopping")
    cache_dir: Optional[str] = opt(None, "Hugging Face cache folder for Hub downloads")
    disable_tqdm: bool = opt(False, "no progress bars")


def validate(cfg: PrepareConfig) -> None:
    if cfg.tokenizer is None and cfg.vocab_size < MIN_VOCAB_SIZE:
        raise BabyLlamaError(f"--vocab_size {cfg.vocab_size} is too small: the 256 bytes and the special tokens "
                             f"need at least {MIN_VOCAB_SIZE}")
    if cfg.tokenizer_type not in TOKENIZER_TYPES:
        raise BabyLlamaError(f"--tokenizer_type {cfg.tokenizer_type!r} is unknown: use {' or '.join(TOKENIZER_TYPES)}")
    if not 0 < cfg.valid_fraction < 0.5:
        raise BabyLlamaError(f"--valid_fraction must be in (0, 0.5), got {cfg.valid_fraction}")
    for name in ("tokenizer_max_bytes", "max_examples", "max_bytes", "num_proc", "chunk_mb"):
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise BabyLlamaError(f"--{name} must be positive, got {value}")
    if cfg.encoder not in ENCODERS:
        raise BabyLlamaError(f"--encoder must be one of {', '.join(ENCODERS)}, got {cfg.encoder!r}")


def default_out(cfg: PrepareConfig) -> Path:
    name = cfg.data[3:].split("/")[-1] if cfg.data.startswith("hf:") else Path(cfg.data.rstrip("/")).stem
    slice_tag = f"-{cfg.max_bytes // 1_000_000}mb" if cfg.max_bytes else ""
    return Path("data") / f"{name.lower() or 'corpus'}{slice_tag}-{cfg.vocab_size}"


def _sliced(docs: Iterator[str], cfg: PrepareConfig) -> Iterator[str]:
    """The first --max_examples documents / --max_bytes of text (the document that crosses the limit included)."""
    if cfg.max_examples:
        docs = itertools.islice(docs, cfg.max_examples)
    total = 0
    for doc in docs:
        if cfg.max_bytes and total >= cfg.max_bytes:
            return
        yield doc
        total += len(doc.encode("utf-8")) if cfg.max_bytes else 0


class Source:
    """What prepare reads: train and valid document streams, re-creatable identically (resume relies on it)."""

    def __init__(self, cfg: PrepareConfig):
        self.cfg = cfg
        self.hub: Optional[HubSource] = hub_source(
            cfg.data, subset=cfg.subset, split=cfg.data_split, valid_split=cfg.valid_split, text_field=cfg.text_field,
            revision=cfg.revision, cache_dir=cfg.cache_dir)
        if self.hub is None and (cfg.subset or cfg.revision or cfg.valid_split or cfg.data_split != "train"):
            raise BabyLlamaError("--subset, --data_split, --valid_split and --revision apply to Hub datasets "
                                 "(--data hf:OWNER/NAME); --data names local files")
        self.corpus: Optional[Corpus] = None if self.hub else resolve_corpus(cfg.data)
        self.stats = ReadStats()

    @property
    def origin(self) -> str:
        return self.hub.origin if self.hub else self.corpus.origin

    @property
    def has_valid(self) -> bool:
        return bool(self.hub.valid_split) if self.hub else bool(self.corpus.valid)

    def fingerprint_parts(self) -> dict:
        base = {"max_examples": self.cfg.max_examples, "max_bytes": self.cfg.max_bytes}
        if self.hub:
            return {"hub": self.hub.fingerprint_parts(), **base}
        return {"train": file_fingerprint(self.corpus.train), "valid": file_fingerprint(self.corpus.valid),
                "text_field": self.cfg.text_field, "skip_bad_lines": self.cfg.skip_bad_lines, **base}

    def _reader(self, paths):
        return iter_corpus(paths, text_field=self.cfg.text_field, skip_bad_lines=self.cfg.skip_bad_lines,
                           stats=self.stats)

    def train_documents(self) -> Iterator[str]:
        docs = self.hub.documents(self.hub.split) if self.hub else self._reader(self.corpus.train)
        return _sliced(docs, self.cfg)

    def streams(self) -> list:
        self.stats = ReadStats()  # counted afresh on each full pass
        streams = [("train", self.train_documents())]
        if self.hub and self.hub.valid_split:
            streams.append(("valid", self.hub.documents(self.hub.valid_split)))
        elif self.corpus and self.corpus.valid:
            streams.append(("valid", self._reader(self.corpus.valid)))
        return streams

    def tokenizer_sample(self) -> tuple[Iterator[str], str]:
        """Documents for tokenizer training, spread over the corpus (or its slice), and how they were chosen."""
        if self.hub:
            if self.cfg.max_bytes or self.cfg.max_examples:
                return self.train_documents(), "the slice, from its start"
            return self.hub.documents(self.hub.split, shuffle_seed=0), "shards in a seeded order (seed 0)"
        if self.cfg.max_bytes or self.cfg.max_examples:
            return self.train_documents(), "the slice, from its start"
        return spread_sample(self.corpus.train, self.cfg.tokenizer_max_bytes, self.cfg.text_field,
                             self.cfg.skip_bad_lines)

    def size_hint(self) -> Optional[int]:
        if self.cfg.max_bytes:
            return self.cfg.max_bytes
        if self.corpus:
            return sum(p.stat().st_size for p in self.corpus.train + self.corpus.valid)
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) holds no lock on anything
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def claim_staging(out: Path, fingerprint: str, log) -> Path:
    """The staging folder, ours now: taken over from a dead run with the same inputs, else made fresh."""
    work = out / STAGING
    owner_file = work / "owner.json"
    if work.exists():
        try:
            owner = json.loads(owner_file.read_text())
        except (OSError, json.JSONDecodeError):
            owner = {}
        if owner.get("host") == socket.gethostname() and owner.get("pid") != os.getpid() and \
                _pid_alive(int(owner.get("pid", 0) or 0)):
            raise BabyLlamaError(f"another prepare (process {owner['pid']}) is writing {out}; wait for it to "
                                 f"finish, or stop it, then run this again")
        if owner.get("fingerprint") == fingerprint:
            log(f"taking over the unfinished preparation left in {work}")
        else:
            shutil.rmtree(work)
    try:
        work.mkdir(parents=True, exist_ok=True)
        tmp = work / ".owner.tmp"
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "fingerprint": fingerprint}))
        os.replace(tmp, owner_file)
    except OSError as err:
        raise BabyLlamaError(f"cannot write the output folder {out}: {err.strerror or err}; "
                             f"choose another --out") from None
    return work


def _commit(work: Path, out: Path) -> None:
    """Move a complete preparation from `work` into `out`; manifest.json goes first out and last in, so a
    folder caught halfway (a kill) reads as unprepared, never as complete with mixed files."""
    (out / "manifest.json").unlink(missing_ok=True)
    for name in ("train.bin", "train.idx.npy", "valid.bin", "valid.idx.npy"):
        os.replace(work / name, out / name)
    shutil.rmtree(out / "tokenizer", ignore_errors=True)
    os.replace(work / "tokenizer", out / "tokenizer")
    os.replace(work / "manifest.json", out / "manifest.json")


def _get_tokenizer(cfg: PrepareConfig, source: Source, given: Optional[BabyTokenizer], work: Path,
                   log) -> tuple[BabyTokenizer, dict]:
    """The tokenizer: given, found in the staging folder (a resumed run), or trained on a spread sample."""
    if given:
        log(f"reusing tokenizer {cfg.tokenizer} ({given.vocab_size} tokens)")
        if given.path.name == "tokenizer" and (given.path.parent / "manifest.json").is_file():
            # another prepared folder's tokenizer: copied as is (saving would import transformers: seconds)
            shutil.rmtree(work / "tokenizer", ignore_errors=True)
            (work / "tokenizer").mkdir()
            for name in TOKENIZER_FILES:
                if (given.path / name).is_file():
                    shutil.copy2(given.path / name, work / "tokenizer" / name)
        else:
            given.save(work / "tokenizer")
        return given, {}
    info_path = work / "tokenizer-training.json"
    if (work / "tokenizer" / "tokenizer.json").is_file() and info_path.is_file():
        return load_tokenizer(work / "tokenizer"), json.loads(info_path.read_text())
    (work / PROGRESS).unlink(missing_ok=True)  # chunks encoded with a tokenizer that is gone are not reused
    docs, method = source.tokenizer_sample()
    first = next(docs, None)
    if first is None:  # say so before BPE finds "too small"
        raise BabyLlamaError(f"no train documents in {source.origin}: the files are empty or whitespace only")
    record = SampleRecord(method)
    kind = "SentencePiece" if cfg.tokenizer_type == "sentencepiece" else "byte-level"
    log(f"training a {kind} BPE tokenizer with {cfg.vocab_size} tokens on up to "
        f"{cfg.tokenizer_max_bytes / 1e6:g} MB of {source.origin} ({method})")
    started = time.time()
    train = train_sentencepiece if cfg.tokenizer_type == "sentencepiece" else train_tokenizer
    tokenizer = train(record.track(itertools.chain([first], docs), cfg.tokenizer_max_bytes),
                                cfg.vocab_size, show_progress=not cfg.disable_tqdm)
    info = {"sample": record.as_dict(), "seconds": round(time.time() - started, 2)}
    log(f"trained the tokenizer in {info['seconds']:.1f}s on {record.documents:,} documents "
        f"({record.bytes / 1e6:.1f} MB)")
    tokenizer.save(work / "tokenizer")
    info_path.write_text(json.dumps(info))
    return load_tokenizer(work / "tokenizer"), info


def _choose_encoder(tokenizer: BabyTokenizer, source: Source, choice: str, log):
    """The fast encoder, checked against `tokenizers` on the first documents of this very corpus."""
    encoder = fast_encoder(tokenizer, choice)
    if encoder.kind == "tiktoken":
        reference = reference_encoder(tokenizer)
        checked = 0
        for doc in source.train_documents():
            if checked >= VERIFY_BYTES:
                break
            checked += len(doc)
            if encoder.encode(doc) != reference.encode(doc):
                if choice == "tiktoken":
                    raise BabyLlamaError("--encoder tiktoken gives other ids than tokenizers on this corpus; "
                                         "use --encoder auto")
                log("tiktoken disagrees with tokenizers on this corpus: encoding with tokenizers")
                return reference
    return encoder


def _tokenizer_folder(given: str) -> Path:
    """--tokenizer may name a tokenizer folder, its tokenizer.json, or a prepared data folder holding tokenizer/."""
    path = Path(given)
    return path / "tokenizer" if (path / "tokenizer" / "tokenizer.json").is_file() else path


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
    source = Source(cfg)
    given_tokenizer = load_tokenizer(_tokenizer_folder(cfg.tokenizer)) if cfg.tokenizer else None
    parts = {
        "format_version": FORMAT_VERSION, "source": source.fingerprint_parts(),
        "vocab_size": None if given_tokenizer else cfg.vocab_size,
        "tokenizer": given_tokenizer.hash if given_tokenizer else None,
        "valid_fraction": None if source.has_valid else cfg.valid_fraction,
        "tokenizer_max_bytes": None if given_tokenizer else cfg.tokenizer_max_bytes,
    }
    if cfg.tokenizer_type != "bpe" and not given_tokenizer:  # (absent for bpe: earlier preparations stay current)
        parts["tokenizer_type"] = cfg.tokenizer_type
    fingerprint = fingerprint_of(parts)
    if (manifest := reuse_if_current(out, fingerprint)) is not None:
        if not (damage := damaged(out, manifest)):
            log(f"{out} is up to date with its inputs: reusing it ({manifest['splits']['train']['tokens']:,} "
                f"train tokens)")
            return out
        log(f"{out} is damaged ({damage}): preparing it again")

    # Everything is written into a staging folder inside `out` and moved into place only when complete:
    # bad input found halfway never damages shards already there; a kill leaves the staging folder to resume from.
    created = not out.exists()
    work = claim_staging(out, fingerprint, log)
    started = time.time()
    try:
        tokenizer, training = _get_tokenizer(cfg, source, given_tokenizer, work, log)
        encoder = _choose_encoder(tokenizer, source, cfg.encoder, log)
        num_proc = cfg.num_proc or os.cpu_count() or 1
        log(f"encoding {source.origin} with {encoder.kind} in {num_proc} process{'es' if num_proc > 1 else ''} "
            f"({encoder.reason})")
        encode_started = time.time()
        splits = _encode(cfg, source, tokenizer, encoder, work, fingerprint, num_proc, log)
        encode_seconds = time.time() - encode_started
        for name, split in splits.items():
            if split["documents"] == 0:
                hint = " (add more documents or raise --valid_fraction)" if name == "valid" else ""
                raise BabyLlamaError(f"no {name} documents in {source.origin}: the files are empty or "
                                     f"whitespace only{hint}")
        manifest = {
            "babyllama_version": __version__,
            "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "origin": source.origin,
            "sources": ({"hub": source.hub.fingerprint_parts()} if source.hub else
                        {"train": [str(p) for p in source.corpus.train], "valid": [str(p) for p in source.corpus.valid]}),
            "slice": {"max_examples": cfg.max_examples, "max_bytes": cfg.max_bytes},
            "validation": ("split or files" if source.has_valid else
                           f"every {round(1 / cfg.valid_fraction)}th training document"),
            "tokenizer": {"hash": tokenizer.hash, "vocab_size": tokenizer.vocab_size,
                          "trained": given_tokenizer is None, "from": cfg.tokenizer, **training},
            "encoder": {"kind": encoder.kind, "reason": encoder.reason, "num_proc": num_proc},
            "dtype": str(token_dtype(tokenizer.vocab_size)),
            "splits": splits,
            "read": {"bad_lines_skipped": source.stats.bad_lines, "empty_documents": source.stats.empty_documents,
                     "bad_line_examples": source.stats.bad_line_examples},
            "config": {k: v for k, v in vars(cfg).items()},
            "seconds": {"tokenizer": training.get("seconds", 0.0), "encode": round(encode_seconds, 2),
                        "total": round(time.time() - started, 2)},
            "fingerprint": fingerprint,
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
        _commit(work, out)
        shutil.rmtree(work, ignore_errors=True)
    except BabyLlamaError:
        # Bad input is not an interruption: nothing to resume, nothing left behind.
        shutil.rmtree(out if created else work, ignore_errors=True)
        raise
    train, valid = splits["train"], splits["valid"]
    log(f"wrote {out}: train {train['documents']:,} docs / {train['tokens']:,} tokens "
        f"({train['text_bytes'] / max(train['tokens'], 1):.2f} bytes/token), "
        f"valid {valid['documents']:,} docs / {valid['tokens']:,} tokens, in {time.time() - started:.1f}s "
        f"(encoding {train['text_bytes'] / 1e6 / max(encode_seconds, 1e-9):.1f} MB/s)")
    if source.stats.bad_lines:
        log(f"skipped {source.stats.bad_lines} malformed lines, e.g. {source.stats.bad_line_examples[0]}")
    return out


def _encode(cfg: PrepareConfig, source: Source, tokenizer: BabyTokenizer, encoder, work: Path, fingerprint: str,
            num_proc: int, log) -> dict:
    from tqdm.auto import tqdm

    holdout_every = 0 if source.has_valid else round(1 / cfg.valid_fraction)
    with tqdm(total=source.size_hint(), unit="B", unit_scale=True, desc="tokenizing",
              disable=cfg.disable_tqdm) as bar:
        return encode_corpus(source.streams(), encoder, work, fingerprint=fingerprint, bos=tokenizer.bos_id,
                             eos=tokenizer.eos_id, dtype=token_dtype(tokenizer.vocab_size), holdout_every=holdout_every,
                             num_proc=num_proc, chunk_bytes=int(cfg.chunk_mb * 1_000_000),
                             on_chunk=lambda size, resumed: bar.update(size), log=log)
