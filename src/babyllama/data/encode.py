"""The fastest exact encoder for a tokenizer: tiktoken for our byte-level BPE, `tokenizers` otherwise.

Why tiktoken gives the same ids as `tokenizers` for a tokenizer that `train_tokenizer` made (each condition is
checked by `fast_encoder`; when one fails, encoding falls back to `tokenizers` and says why):

* Same pieces. No normalizer; the pre-tokenizer is ByteLevel(add_prefix_space=False, use_regex=True), whose split
  regex is GPT-2's, given to tiktoken verbatim, and whose byte-to-character map is reversible (byte_to_char), so
  each vocabulary entry is exactly one byte string.
* Same special tokens. `tokenizers` cuts the text at every added token before the regex runs (whatever
  add_special_tokens says); tiktoken does the same for the tokens passed as allowed_special. Both must find the same
  cuts: no added token strips or matches single words only, and none contains another (tiktoken's alternation
  is leftmost-first, `tokenizers`' leftmost-longest; they agree when no token contains another).
* Same merges in the same order. tiktoken merges the adjacent pair whose concatenation has the lowest id; BPE
  merges the pair ranked first in `merges`. The two orders agree when the merge results get strictly increasing
  ids in merge order, all distinct, which train_tokenizer's layout guarantees. A pair whose concatenation is a token
  without being a listed merge cannot be adjacent where it would matter in a vocabulary BPE learned on the same
  pre-tokenizer (the training pass *is* this encoding pass); tests/test_fast_encoding.py checks the ids on every
  shared story and on adversarial text, and `prepare` re-checks the first chunk of every corpus with both encoders.
* No dropout, no unknown token, no byte fallback, no subword prefix/suffix, ignore_merges off.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional

from babyllama.data.tokenizer import BabyTokenizer, byte_to_char

# The ByteLevel pre-tokenizer's split pattern in `tokenizers` (GPT-2's).
BYTE_LEVEL_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENCODERS = ("auto", "tiktoken", "tokenizers")


def tiktoken_blocker(spec: dict) -> Optional[str]:
    """Why tiktoken cannot reproduce this tokenizer.json exactly, or None when it can."""
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        return f"the model is {model.get('type')}, not BPE"
    if spec.get("normalizer") is not None:
        return "the tokenizer has a normalizer"
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") != "ByteLevel" or pre.get("add_prefix_space") or not pre.get("use_regex", True):
        return "the pre-tokenizer is not ByteLevel(add_prefix_space=False, use_regex=True)"
    for key in ("dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            return f"BPE option {key} is set"
    if model.get("byte_fallback") or model.get("ignore_merges"):
        return "BPE byte_fallback or ignore_merges is on"
    to_byte = {c: b for b, c in byte_to_char().items()}
    vocab = model["vocab"]
    if any(char not in vocab for char in to_byte):
        return "not all 256 bytes are in the vocabulary"
    merges = [m.split(" ", 1) if isinstance(m, str) else m for m in model.get("merges", [])]
    ids = [vocab.get(left + right) for left, right in merges]
    if None in ids or any(a >= b for a, b in zip(ids, ids[1:])):
        return "merge results do not have strictly increasing ids in merge order"
    if any(not all(c in to_byte for c in token) for token in vocab):
        return "a vocabulary entry is not made of byte-level characters"
    added = spec.get("added_tokens") or []
    for token in added:
        if token.get("lstrip") or token.get("rstrip") or token.get("single_word") or token.get("normalized"):
            return f"added token {token['content']!r} strips, matches single words or is normalized"
    contents = [t["content"] for t in added]
    for a in contents:
        if any(a != b and a in b for b in contents):
            return f"added token {a!r} is part of another added token"
    return None


def _tiktoken_encoding(spec: dict):
    import tiktoken

    to_byte = {c: b for b, c in byte_to_char().items()}
    added = {t["content"]: t["id"] for t in spec.get("added_tokens") or []}
    ranks = {bytes(to_byte[c] for c in token): token_id for token, token_id in spec["model"]["vocab"].items()
             if token not in added}
    return tiktoken.Encoding("babyllama", pat_str=BYTE_LEVEL_PATTERN, mergeable_ranks=ranks, special_tokens=added)


@dataclass
class Encoder:
    """Text -> ids (no BOS/EOS), single-threaded, picklable as the tokenizer's JSON: workers rebuild it."""

    spec_json: str
    kind: str  # "tiktoken" or "tokenizers"
    reason: str  # why this kind was chosen

    def __post_init__(self):
        self._impl = None

    def __getstate__(self):
        return {"spec_json": self.spec_json, "kind": self.kind, "reason": self.reason}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._impl = None

    def _build(self):
        if self.kind == "tiktoken":
            encoding = _tiktoken_encoding(json.loads(self.spec_json))
            specials = set(encoding.special_tokens_set)
            return lambda text: encoding.encode(text, allowed_special=specials, disallowed_special=())
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(self.spec_json)
        # One document at a time: `encode` runs on the calling thread only, unlike encode_batch's thread pool.
        return lambda text: tokenizer.encode(text, add_special_tokens=False).ids

    def encode(self, text: str) -> list[int]:
        if self._impl is None:
            self._impl = self._build()
        return self._impl(text)


def reference_encoder(tokenizer: BabyTokenizer) -> Encoder:
    return Encoder(tokenizer.tokenizer.to_str(), "tokenizers", "asked for the reference encoder")


def fast_encoder(tokenizer: BabyTokenizer, choice: str = "auto") -> Encoder:
    """tiktoken where it is exact (see the module docstring), else `tokenizers`; choice forces one."""
    spec_json = tokenizer.tokenizer.to_str()
    if choice == "tokenizers":
        return Encoder(spec_json, "tokenizers", "--encoder tokenizers")
    blocker = tiktoken_blocker(json.loads(spec_json))
    if blocker is None:
        try:
            import tiktoken  # noqa: F401
        except ImportError:
            blocker = "tiktoken is not installed (pip install tiktoken)"
    if blocker is None:
        return Encoder(spec_json, "tiktoken", "byte-level BPE: tiktoken gives identical ids")
    if choice == "tiktoken":
        from babyllama.errors import BabyLlamaError

        raise BabyLlamaError(f"--encoder tiktoken cannot reproduce this tokenizer exactly: {blocker}; "
                             f"use --encoder auto")
    return Encoder(spec_json, "tokenizers", f"tiktoken would not be exact: {blocker}")


def pin_to_one_thread() -> None:
    """For a worker process: `tokenizers` (rayon) and BLAS may not spread over the cores other workers use."""
    for var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
