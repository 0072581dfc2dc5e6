import json
import os

import numpy as np
import pytest

from babyllama.data.prepare import PrepareConfig, prepare
from babyllama.data.shards import PretokenizedData, token_dtype
from babyllama.data.sources import read_documents
from babyllama.data.tokenizer import BYTE_OFFSET, CHAT_TOKENS, load_tokenizer, train_tokenizer
from babyllama.errors import BabyLlamaError


def test_every_shared_story_round_trips(prepared_512, tinystories):
    tokenizer = load_tokenizer(prepared_512 / "tokenizer")
    stories = list(read_documents(tinystories / "train.txt")) + list(read_documents(tinystories / "valid.txt"))
    assert len(stories) == 6235 + 220
    decoded = [tokenizer.decode(ids) for ids in tokenizer.encode_batch(stories)]
    mismatches = [s for s, d in zip(stories, decoded) if s != d]
    assert mismatches == []


def test_vocabulary_layout_matches_llama_conventions(prepared_512):
    tokenizer = load_tokenizer(prepared_512 / "tokenizer")
    assert (tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2)
    assert tokenizer.vocab_size == 512
    table = tokenizer.token_bytes()
    assert all(table[BYTE_OFFSET + b] == bytes([b]) for b in range(256))
    assert all(tokenizer.token_id(t) is not None for t in CHAT_TOKENS)
    assert tokenizer.encode("é") == [BYTE_OFFSET + 0xC3, BYTE_OFFSET + 0xA9]  # unseen text falls back to bytes


def test_autotokenizer_loads_the_folder(prepared_512):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(prepared_512 / "tokenizer"))
    ours = load_tokenizer(prepared_512 / "tokenizer")
    text = "Once upon a time, Lily met a dog."
    assert hf(text).input_ids == [ours.bos_id] + ours.encode(text)
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (1, 2, ours.pad_id)
    assert hf.decode(hf(text).input_ids, skip_special_tokens=True) == text


def test_vocab_too_small_is_rejected():
    with pytest.raises(BabyLlamaError, match="too small"):
        train_tokenizer(["hello world"], 100)


def test_shards_hold_bos_doc_eos(prepared_512, tinystories):
    data = PretokenizedData(prepared_512)
    tokens, offsets = data.tokens("valid"), data.offsets("valid")
    assert tokens.dtype == np.uint16 and len(offsets) == 221 and offsets[-1] == len(tokens)
    first = tokens[offsets[0]:offsets[1]]
    assert first[0] == data.tokenizer.bos_id and first[-1] == data.tokenizer.eos_id
    story = next(iter(read_documents(tinystories / "valid.txt")))
    assert data.tokenizer.decode(first[1:-1].tolist()) == story
    manifest = data.manifest
    assert manifest["splits"]["valid"]["documents"] == 220
    assert manifest["tokenizer"]["hash"] == data.tokenizer.hash


def test_token_dtype_widens_past_uint16():
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32


def test_rerun_reuses_shards(prepared_512, tinystories):
    before = os.stat(prepared_512 / "train.bin").st_mtime_ns
    messages = []
    prepare(PrepareConfig(data=str(tinystories), vocab_size=512, out=str(prepared_512), disable_tqdm=True),
            log=messages.append)
    assert os.stat(prepared_512 / "train.bin").st_mtime_ns == before
    assert "reusing" in messages[0]


def test_held_out_fraction_without_valid_file(tmp_path, tinystories):
    docs = list(read_documents(tinystories / "valid.txt"))
    corpus = tmp_path / "stories.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    out = tmp_path / "prepared"
    prepare(PrepareConfig(data=str(corpus), vocab_size=300, out=str(out), valid_fraction=0.1, disable_tqdm=True),
            log=lambda _: None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["valid"]["documents"] == 22  # every 10th of 220, deterministically
    assert manifest["splits"]["train"]["documents"] == 198


def test_reusing_a_tokenizer(tmp_path, prepared_512, tinystories):
    out = tmp_path / "again"
    prepare(PrepareConfig(data=str(tinystories / "valid.txt"), tokenizer=str(prepared_512 / "tokenizer"), out=str(out),
                          valid_fraction=0.1, disable_tqdm=True), log=lambda _: None)
    assert PretokenizedData(out).tokenizer.hash == PretokenizedData(prepared_512).tokenizer.hash
