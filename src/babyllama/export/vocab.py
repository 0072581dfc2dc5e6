"""What other runtimes need to know about a tokenizer: each token's text, merge ranks, special tokens.

Two tokenizer families are understood:
- byte-level BPE (ours, GPT-2 style): token strings spell bytes through GPT-2's printable alphabet;
- SentencePiece-style BPE/Unigram (Llama 2, TinyLlama, ...): "▁" stands for a space and "<0xXX>" for a raw byte.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional

from babyllama.data.tokenizer import BabyTokenizer, _char_to_byte

BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
SPM_SPACE = "\u2581"  # ▁


@dataclass
class VocabInfo:
    tokens: list[str]            # the token strings as the tokenizer stores them, one per id
    byte_level: bool             # GPT-2 byte alphabet (True) or SentencePiece conventions (False)
    merges: list[str]            # "left right" in rank order (BPE), else empty
    scores: list[float]          # per id: Unigram log-probability, or -merge rank for BPE-merged tokens, else 0
    special: set[int]            # ids of control tokens (<s>, </s>, <unk>, <pad>, chat markers, ...)
    bos_id: Optional[int]
    eos_id: Optional[int]
    unk_id: Optional[int]
    pad_id: Optional[int]

    def token_bytes(self, token_id: int) -> bytes:
        """The raw text bytes a (non-special) token stands for."""
        token = self.tokens[token_id]
        if self.byte_level:
            table = _char_to_byte()
            if all(c in table for c in token):
                return bytes(table[c] for c in token)
            return token.encode("utf-8")
        match = BYTE_TOKEN.match(token)
        if match:
            return bytes([int(match.group(1), 16)])
        return token.replace(SPM_SPACE, " ").encode("utf-8")


def vocab_info(tokenizer: BabyTokenizer) -> VocabInfo:
    data = json.loads(tokenizer.tokenizer.to_str())
    model = data["model"]
    size = tokenizer.vocab_size
    tokens = [""] * size
    for token, token_id in tokenizer.tokenizer.get_vocab(with_added_tokens=True).items():
        if token_id < size:
            tokens[token_id] = token
    decoder = json.dumps(data.get("decoder")) + json.dumps(data.get("pre_tokenizer"))
    byte_level = '"ByteLevel"' in decoder

    merges: list[str] = []
    scores = [0.0] * size
    if model["type"] == "BPE":
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        vocab = model["vocab"]
        for rank, merge in enumerate(merges):
            left, right = merge.split(" ", 1)
            merged = vocab.get(left + right)
            if merged is not None and merged < size and scores[merged] == 0.0:
                scores[merged] = -float(rank + 1)  # earlier merges win: a higher score
    elif model["type"] == "Unigram":
        for token_id, (_, score) in enumerate(model["vocab"][:size]):
            scores[token_id] = float(score)

    special = {t["id"] for t in data.get("added_tokens", []) if t.get("special")}
    ids = {name: tokenizer.token_id(tok) for name, tok in (("bos", "<s>"), ("eos", "</s>"), ("unk", "<unk>"),
                                                            ("pad", "<pad>"))}
    for value in ids.values():
        if value is not None:
            special.add(value)
    return VocabInfo(tokens, byte_level, merges, scores, special, tokenizer.bos_id, tokenizer.eos_id,
                     ids["unk"], ids["pad"])
