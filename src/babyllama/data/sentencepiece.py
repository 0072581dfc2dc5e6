"""The Llama-native tokenizer: SentencePiece BPE with byte fallback and the dummy prefix, as Llama 2 and
llama2.c train theirs (`prepare --tokenizer_type sentencepiece`).

It is saved twice, with the same ids:
- `tokenizer.model`, the SentencePiece model (what llama.cpp's convert_hf_to_gguf.py and sentencepiece read);
- `tokenizer.json`, the same vocabulary and merges for Hugging Face `tokenizers` (what babyllama and
  `AutoTokenizer` use): a BPE with byte fallback, no normalisation, a "▁" put in front of the text (the dummy
  prefix) and every space written as "▁".

Vocabulary layout, Llama 2's own, so run.c and every other tool find what they assume:

    0 <unk>, 1 <s> (BOS), 2 </s> (EOS)     control pieces
    3 .. 258                               the byte pieces <0x00> .. <0xFF> (byte fallback)
    259 .. 263                             <pad> and the chat markers (user-defined: whole in any text)
    264 ..                                 learned pieces, best first (score = -rank)
"""

from __future__ import annotations

import io
import os
from typing import Iterable, Iterator

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

from babyllama.data.tokenizer import (BOS, EOS, MIN_VOCAB_SIZE, SPECIAL_TOKENS, TRAILING_SPECIALS, UNK,
                                      BabyTokenizer, _bos_post_processor)
from babyllama.errors import BabyLlamaError

SPACE = "\u2581"  # ▁, SentencePiece's visible space
BYTE_PIECES = 256
MAX_LINE_BYTES = 1 << 16


def _sentences(documents: Iterable[str]) -> Iterator[str]:
    # SentencePiece learns from lines; a newline itself is left to byte fallback (<0x0A>), as in Llama 2.
    for doc in documents:
        for line in doc.split("\n"):
            if line.strip():
                yield line


def train_sentencepiece(documents: Iterable[str], vocab_size: int, show_progress: bool = True) -> BabyTokenizer:
    """Train SentencePiece BPE (llama2.c's settings), lay the vocabulary out as above, return it wrapped for
    babyllama with its `tokenizer.model` bytes attached."""
    try:
        import sentencepiece as spm
    except ImportError:
        raise BabyLlamaError("--tokenizer_type sentencepiece needs the sentencepiece package: "
                             "pip install sentencepiece") from None
    if vocab_size < MIN_VOCAB_SIZE + 1:
        raise BabyLlamaError(f"--vocab_size {vocab_size} is too small: the 256 bytes and {len(SPECIAL_TOKENS)} "
                             f"special tokens need at least {MIN_VOCAB_SIZE + 1} with SentencePiece")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_sentences(documents), model_writer=model, model_type="bpe",
            # the reserved tokens are inserted after training (SentencePiece would put them before the bytes)
            vocab_size=vocab_size - len(TRAILING_SPECIALS),
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, unk_piece=UNK, bos_piece=BOS, eos_piece=EOS,
            byte_fallback=True, add_dummy_prefix=True, remove_extra_whitespaces=False,
            normalization_rule_name="identity", split_digits=True, allow_whitespace_only_pieces=True,
            character_coverage=1.0, max_sentence_length=MAX_LINE_BYTES, hard_vocab_limit=False,
            self_test_sample_size=0, num_threads=os.cpu_count() or 1, minloglevel=0 if show_progress else 2)
    except RuntimeError as err:
        raise BabyLlamaError(f"SentencePiece could not train a {vocab_size}-token vocabulary: {err}") from None
    proto = _with_reserved_tokens(model.getvalue())
    tokenizer = BabyTokenizer(tokenizer_from_sentencepiece(proto))
    tokenizer.sentencepiece_model = proto
    if tokenizer.vocab_size <= MIN_VOCAB_SIZE:
        raise BabyLlamaError("the corpus is too small to learn any SentencePiece merge; give it more text")
    return tokenizer


def _with_reserved_tokens(serialized: bytes) -> bytes:
    """Insert <pad> and the chat markers right after the 256 byte pieces, as user-defined pieces."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(serialized)
    kinds = pb.ModelProto.SentencePiece
    first_learned = 3 + BYTE_PIECES
    assert proto.pieces[3].type == kinds.BYTE and proto.pieces[first_learned - 1].type == kinds.BYTE
    learned = [(p.piece, p.score, p.type) for p in proto.pieces[first_learned:]]
    del proto.pieces[first_learned:]
    for token in TRAILING_SPECIALS:
        proto.pieces.add(piece=token, score=0.0, type=kinds.USER_DEFINED)
    for piece, score, kind in learned:
        proto.pieces.add(piece=piece, score=score, type=kind)
    return proto.SerializeToString()


def tokenizer_from_sentencepiece(serialized: bytes) -> Tokenizer:
    """The same tokenizer for Hugging Face `tokenizers`: vocabulary by id, merges ranked by the merged piece's
    score (SentencePiece's BPE merges the best-scoring adjacent pair first, as `tokenizers` merges the best rank)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(serialized)
    normal = pb.ModelProto.SentencePiece.NORMAL
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    learned = sorted((i for i, p in enumerate(proto.pieces) if p.type == normal and len(p.piece) > 1),
                     key=lambda i: (-proto.pieces[i].score, i))
    merges = []
    for merged in learned:
        piece = proto.pieces[merged].piece
        splits = [(piece[:k], piece[k:]) for k in range(1, len(piece))]
        found = [(vocab[a], vocab[b], a, b) for a, b in splits if a in vocab and b in vocab
                 and proto.pieces[vocab[a]].type == normal and proto.pieces[vocab[b]].type == normal]
        merges += [(a, b) for _, _, a, b in sorted(found)]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=UNK, fuse_unk=True, byte_fallback=True))
    # The dummy prefix: "▁" before every piece of text, spaces as "▁". Text after a special token gets one too,
    # as in llama.cpp (which adds it after every special) and Llama 2's own tokenizer.json; SentencePiece itself
    # adds it only at the very start. Plain text (every pretraining document) gets identical ids either way.
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
    tokenizer.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(content=" ", left=1)])
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.post_processor = _bos_post_processor(vocab[BOS])
    return tokenizer
