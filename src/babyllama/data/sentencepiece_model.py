"""A SentencePiece `tokenizer.model` rebuilt from babyllama's own SentencePiece-style tokenizer.json.

Fine-tuned folders lose tokenizer.model (transformers' save_pretrained writes only tokenizer.json); run.c's
tokenizer export and llama.cpp's converter want it back.
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer

from babyllama.data.special_tokens import BOS, EOS, TRAILING_SPECIALS, UNK

BYTE_PIECES = 256


def is_babyllama_sentencepiece(tokenizer: Tokenizer) -> bool:
    """A tokenizer.json written by tokenizer_from_sentencepiece (our layout, byte fallback, the dummy prefix)."""
    data = json.loads(tokenizer.to_str())
    model = data.get("model") or {}
    return model.get("type") == "BPE" and bool(model.get("byte_fallback")) and \
        tokenizer.token_to_id("<0x00>") == 3 and tokenizer.token_to_id("<0xFF>") == 258 and \
        [tokenizer.token_to_id(t) for t in TRAILING_SPECIALS] == list(range(259, 259 + len(TRAILING_SPECIALS))) and \
        "Prepend" in json.dumps(data.get("normalizer"))


def sentencepiece_model_from(tokenizer: Tokenizer) -> bytes:
    """Rebuild tokenizer.model from our tokenizer.json, for folders that lost it (transformers' save_pretrained,
    used after fine-tuning, writes only tokenizer.json). Encoding needs only the pieces, their kinds and the order
    of the learned pieces' scores; the learned pieces are stored best first, so score = -id keeps that order."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    kinds = pb.ModelProto.SentencePiece
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    reserved = set(TRAILING_SPECIALS)
    for token_id in range(size):
        piece = tokenizer.id_to_token(token_id)
        if token_id == 0:
            kind, score = kinds.UNKNOWN, 0.0
        elif token_id in (1, 2):
            kind, score = kinds.CONTROL, 0.0
        elif 3 <= token_id < 3 + BYTE_PIECES:
            kind, score = kinds.BYTE, 0.0
        elif piece in reserved:
            kind, score = kinds.USER_DEFINED, 0.0
        else:
            kind, score = kinds.NORMAL, -float(token_id)
        proto.pieces.add(piece=piece, score=score, type=kind)
    spec = proto.trainer_spec
    spec.model_type = pb.TrainerSpec.BPE
    spec.vocab_size = size
    spec.byte_fallback = True
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = 0, 1, 2, -1
    spec.unk_piece, spec.bos_piece, spec.eos_piece = UNK, BOS, EOS
    spec.split_digits = True
    spec.allow_whitespace_only_pieces = True
    norm = proto.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = True
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    return proto.SerializeToString()
