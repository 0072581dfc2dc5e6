"""The tokenizer: byte-level BPE trained with Hugging Face `tokenizers`, saved so `AutoTokenizer` loads it.

Vocabulary layout, chosen so every tool downstream finds what it assumes:

    0 <unk>, 1 <s> (BOS), 2 </s> (EOS)      Llama 2's ids, which llama2.c's run.c relies on
    3 .. 258                                the 256 raw bytes, byte b at id 3 + b (run.c's <0xXX> fallback)
    259 .. 263                              <pad> and the chat markers, reserved so fine-tuning never resizes
    264 ..                                  merges, in the order BPE learned them
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from babyllama.errors import BabyLlamaError

from babyllama.data.sentencepiece_model import is_babyllama_sentencepiece, sentencepiece_model_from
from babyllama.data.special_tokens import (BOS, BYTE_OFFSET, CHAT_TOKENS, EOS, LEADING_SPECIALS, MIN_VOCAB_SIZE, PAD,
                                          SENTENCEPIECE_FILE, SPECIAL_TOKENS, TOKENIZER_TYPES, TRAILING_SPECIALS,
                                          UNK)


@lru_cache(maxsize=1)
def byte_to_char() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (the ByteLevel pre-tokenizer's alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _char_to_byte() -> dict[str, int]:
    return {c: b for b, c in byte_to_char().items()}


class BabyTokenizer:
    """A thin wrapper over `tokenizers.Tokenizer` with the ids and facts the pipeline needs."""

    def __init__(self, tokenizer: Tokenizer, path: Optional[Path] = None):
        self.tokenizer = tokenizer
        self.path = path
        self.bos_id = self._id(BOS)
        self.eos_id = self._id(EOS)
        # Optional: an imported Llama tokenizer has none (Llama 2 pads with EOS or <unk>).
        self.pad_id: Optional[int] = self.tokenizer.token_to_id(PAD)
        self.unk_id = self._id(UNK)
        self.sentencepiece_model: Optional[bytes] = None  # tokenizer.model, for --tokenizer_type sentencepiece

    def _id(self, token: str) -> int:
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise BabyLlamaError(f"tokenizer{' ' + str(self.path) if self.path else ''} has no {token} token")
        return token_id

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def token_id(self, token: str) -> Optional[int]:
        return self.tokenizer.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        """Token ids of text, without BOS/EOS."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_bytes(self) -> list[bytes]:
        """The raw bytes each id stands for (empty for special tokens): the basis of bits per byte."""
        char_to_byte = _char_to_byte()
        specials = set(SPECIAL_TOKENS) | {t.content for t in self.tokenizer.get_added_tokens_decoder().values()}
        table = [b""] * self.vocab_size
        byte_level = isinstance(self.tokenizer.decoder, decoders.ByteLevel)
        for token, token_id in self.tokenizer.get_vocab(with_added_tokens=True).items():
            if token in specials:
                continue
            if not byte_level:  # SentencePiece conventions (an imported Llama tokenizer): "▁" a space, <0xXX> a byte
                raw = token[3:5] if len(token) == 6 and token.startswith("<0x") and token.endswith(">") else None
                table[token_id] = bytes.fromhex(raw) if raw else token.replace("\u2581", " ").encode("utf-8")
                continue
            try:
                table[token_id] = bytes(char_to_byte[c] for c in token)
            except KeyError:  # not a byte-level token (e.g. an imported tokenizer): use its decoded text
                table[token_id] = self.tokenizer.decode([token_id]).encode("utf-8")
        return table

    def token_byte_lengths(self) -> np.ndarray:
        return np.array([len(b) for b in self.token_bytes()], dtype=np.int64)

    @property
    def hash(self) -> str:
        return tokenizer_hash(self.tokenizer)

    def save(self, folder: str | Path) -> Path:
        """Save tokenizer.json plus the files `transformers.AutoTokenizer` reads."""
        from transformers import PreTrainedTokenizerFast

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=self.tokenizer, bos_token=BOS, eos_token=EOS, unk_token=UNK,
            pad_token=PAD if self.pad_id is not None else None,  # never add a token the model has no row for
            additional_special_tokens=[t for t in CHAT_TOKENS if self.token_id(t) is not None],
            clean_up_tokenization_spaces=False, model_max_length=1 << 30)
        if all(self.token_id(t) is not None for t in CHAT_TOKENS):
            from babyllama.data.chat_template import CHAT_TEMPLATE

            fast.chat_template = CHAT_TEMPLATE  # chat fine-tuning needs no resize: the role tokens exist already
        fast.save_pretrained(str(folder))
        if self.sentencepiece_model is not None:  # the same tokenizer for sentencepiece and llama.cpp's converter
            (folder / SENTENCEPIECE_FILE).write_bytes(self.sentencepiece_model)
        self.path = folder
        return folder


def tokenizer_hash(tokenizer: Tokenizer) -> str:
    """sha256 of the canonical JSON of the tokenizer (vocabulary, merges, normalisation, specials)."""
    canonical = json.dumps(json.loads(tokenizer.to_str()), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_tokenizer(folder: str | Path) -> BabyTokenizer:
    folder = Path(folder)
    file = folder / "tokenizer.json" if folder.is_dir() else folder
    if not file.is_file():
        raise BabyLlamaError(f"no tokenizer.json in {folder}")
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as err:
        raise BabyLlamaError(f"{file} is not a valid tokenizer file: {err}") from None
    loaded = BabyTokenizer(tokenizer, file.parent)
    if (file.parent / SENTENCEPIECE_FILE).is_file():
        loaded.sentencepiece_model = (file.parent / SENTENCEPIECE_FILE).read_bytes()
    elif "ByteFallback" in tokenizer.to_str():  # a fine-tune's folder (transformers saves no tokenizer.model)
        if is_babyllama_sentencepiece(tokenizer):
            loaded.sentencepiece_model = sentencepiece_model_from(tokenizer)
    return loaded


def _bos_post_processor(bos_id: int) -> processors.TemplateProcessing:
    # Like Llama's tokenizer, `tokenizer("text")` in transformers starts with BOS.
    return processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)])


def train_tokenizer(documents: Iterable[str], vocab_size: int, show_progress: bool = True) -> BabyTokenizer:
    """Learn byte-level BPE merges, then lay the vocabulary out as the module docstring describes."""
    if vocab_size < MIN_VOCAB_SIZE:
        raise BabyLlamaError(f"--vocab_size {vocab_size} is too small: the 256 bytes and {len(SPECIAL_TOKENS)} "
                             f"special tokens need at least {MIN_VOCAB_SIZE}")
    pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    draft = Tokenizer(models.BPE())
    draft.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL_TOKENS), show_progress=show_progress,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    draft.train_from_iterator(documents, trainer)
    learned = json.loads(draft.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    if len(learned["vocab"]) <= 256 and vocab_size > MIN_VOCAB_SIZE:
        raise BabyLlamaError("the corpus is too small to learn any BPE merge; give it more text")

    vocab: dict[str, int] = {token: i for i, token in enumerate(LEADING_SPECIALS)}
    for b, char in sorted(byte_to_char().items()):
        vocab[char] = BYTE_OFFSET + b
    for token in TRAILING_SPECIALS:
        vocab[token] = len(vocab)
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.post_processor = _bos_post_processor(vocab[BOS])
    return BabyTokenizer(tokenizer)
