"""prepare --tokenizer_type sentencepiece: SentencePiece BPE (byte fallback, dummy prefix) in Llama 2's layout,
saved as tokenizer.model and a tokenizer.json that give the same ids, and the whole pipeline on top of it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

spm = pytest.importorskip("sentencepiece")

from babyllama.data.tokenizer import CHAT_TOKENS, PAD, load_tokenizer  # noqa: E402

ADVERSARIAL = [
    "Once upon a time", " leading space", "  two leading spaces", "trailing space ", "a  b   c    d\t\te",
    "line one\nline two\n\n\nfour newlines\r\nwindows", "digits 3 33 333 3.14 2026-11-30 1,000,000",
    "naïve café — “quotes” ‘single’ …", "😀🦙 emoji and 🚀🚀", "中文字符和日本語のテキスト", "Ελληνικά и кириллица",
    "\x00\x01\x7f control bytes", "tab\tafter", "", " ", "\n", "▁ a literal SentencePiece space ▁▁",
    "<0x41> is not a byte token", "ends with a chat marker <|end|>", "Hi<|user|>there<|assistant|>ok<|end|>",
    "x" * 300, "the " * 50,
]


@pytest.fixture(scope="module")
def sp_data(tinystories, tmp_path_factory) -> Path:
    """A slice of TinyStories prepared with a 512-token SentencePiece vocabulary."""
    from babyllama.data.prepare import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("sp")
    (root / "stories").mkdir()
    for split, size in (("train", 400_000), ("valid", 40_000)):
        text = (tinystories / f"{split}.txt").read_text(encoding="utf-8")[:size]
        (root / "stories" / f"{split}.txt").write_text(text, encoding="utf-8")
    out = root / "ts-sp-512"
    prepare(PrepareConfig(data=str(root / "stories"), vocab_size=512, out=str(out), tokenizer_type="sentencepiece",
                          disable_tqdm=True), log=lambda _: None)
    return out


def _sp(folder: Path):
    processor = spm.SentencePieceProcessor()
    processor.LoadFromFile(str(folder / "tokenizer.model"))
    return processor


def test_llama2_id_layout(sp_data):
    folder = sp_data / "tokenizer"
    sp, tok = _sp(folder), load_tokenizer(folder)
    assert sp.vocab_size() == tok.vocab_size == 512
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2) == (tok.unk_id, tok.bos_id, tok.eos_id)
    assert [sp.id_to_piece(3 + b) for b in (0, 0x41, 0xFF)] == ["<0x00>", "<0x41>", "<0xFF>"]
    assert all(sp.is_byte(3 + b) for b in range(256)) and not sp.is_byte(259)
    reserved = (PAD,) + CHAT_TOKENS
    assert [sp.id_to_piece(259 + i) for i in range(len(reserved))] == list(reserved)
    assert [tok.token_id(t) for t in reserved] == list(range(259, 259 + len(reserved)))
    assert tok.pad_id == 259
    manifest = json.loads((sp_data / "manifest.json").read_text())
    assert manifest["config"]["tokenizer_type"] == "sentencepiece"


def test_tokenizer_json_gives_the_ids_of_tokenizer_model(sp_data, tinystories):
    folder = sp_data / "tokenizer"
    sp, tok = _sp(folder), load_tokenizer(folder)
    stories = (tinystories / "valid.txt").read_text(encoding="utf-8").split("<|endoftext|>")[:200]
    texts = [s.strip() for s in stories] + ADVERSARIAL
    markers = re.compile("(" + "|".join(re.escape(t) for t in CHAT_TOKENS) + ")")
    for text in texts:
        if markers.search(text):
            # After a special token, llama.cpp and Llama 2's tokenizer.json put the dummy prefix again:
            # each piece of text is encoded as SentencePiece encodes it alone.
            expected = [tok.token_id(part) if markers.fullmatch(part) else sp.encode(part)
                        for part in markers.split(text) if part]
            expected = [i for part in expected for i in ([part] if isinstance(part, int) else part)]
            assert tok.encode(text) == expected, repr(text[:80])
            continue
        # (SentencePiece does not match its control pieces <s>, </s>, <unk> in text; none of these hold one)
        assert tok.encode(text) == sp.encode(text), repr(text[:80])
        assert tok.decode(tok.encode(text)) == sp.decode(sp.encode(text))
        if "\u2581" not in text:  # (a literal "▁" is a space to SentencePiece: it decodes as one)
            assert tok.decode(tok.encode(text)) == text, repr(text[:80])


def test_transformers_loads_it_with_the_same_ids(sp_data):
    from transformers import AutoTokenizer

    folder = sp_data / "tokenizer"
    sp, hf = _sp(folder), AutoTokenizer.from_pretrained(str(folder))
    for text in ADVERSARIAL[:12]:
        assert hf(text)["input_ids"] == ([1] + sp.encode(text) if text else [1])
    chat = hf.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<s><|user|>Hi<|end|><|assistant|>"


def test_bits_per_byte_lengths_count_the_dummy_prefix_once(sp_data, tinystories):
    tok = load_tokenizer(sp_data / "tokenizer")
    lengths = tok.token_byte_lengths()
    assert lengths[:3].tolist() == [0, 0, 0] and lengths[3:259].tolist() == [1] * 256 and lengths[259:264].sum() == 0
    for text in ADVERSARIAL:
        if "\u2581" in text or "<|" in text:  # a literal "▁" is a space to SentencePiece (1 byte, not 3)
            continue
        ids = tok.encode(text)
        # the "▁" put in front of the text counts as the one byte of a space
        assert int(lengths[ids].sum()) == len(text.encode("utf-8")) + (1 if text else 0), repr(text)


def test_runc_and_babyllama_agree_on_a_prompt(sp_data, tmp_path):
    """run.c puts SentencePiece's dummy prefix before a prompt; with this tokenizer babyllama does the same, so
    the same prompt gives the same tokens (checked with the Python model of run.c's encoder in test_export)."""
    from test_export import read_runc_tokenizer, runc_encode

    from babyllama.export.llama2c import write_tokenizer

    tok = load_tokenizer(sp_data / "tokenizer")
    write_tokenizer(tok, tok.vocab_size, tmp_path / "tokenizer.bin")
    _, pieces, scores = read_runc_tokenizer(tmp_path / "tokenizer.bin", tok.vocab_size)
    for prompt in ("Once upon a time", "Lily and Ben went to the park.", "The dog said, \"Woof!\" 3 times"):
        assert runc_encode(prompt, pieces, scores) == tok.encode(prompt), prompt


def test_pipeline_end_to_end(sp_data, tmp_path):
    """prepare (sentencepiece) -> pretrain 20 steps -> sample -> export hf, llama2c, gguf."""
    import gguf
    from conftest import pretrain_tiny
    from transformers import AutoTokenizer

    from babyllama.export.gguf import export_gguf
    from babyllama.export.hf import export_hf
    from babyllama.export.llama2c import export_llama2c
    from babyllama.infer.generate import generate
    from babyllama.modelio import load_model

    run = pretrain_tiny(sp_data, tmp_path / "runs", "sp", max_steps=20)
    assert (run / "model" / "tokenizer.model").is_file()
    record = json.loads((run / "manifest.json").read_text())
    assert record["status"] == "completed"
    model, tok, _ = load_model(run)
    out = generate(model.eval(), [[1] + tok.encode("Once upon a time")], 8, temperature=0.0)[0]
    assert len(out) == 8
    hf = export_hf(run, tmp_path / "hf")
    assert (hf / "tokenizer.model").is_file()
    assert AutoTokenizer.from_pretrained(str(hf))("Once upon")["input_ids"] == [1] + tok.encode("Once upon")
    model_file, tok_file = export_llama2c(run, tmp_path / "l2c", log=lambda _: None)
    assert model_file.stat().st_size > 0 and tok_file.stat().st_size > 0
    reader = gguf.GGUFReader(export_gguf(run, tmp_path / "m.gguf", "f32"))
    assert reader.fields["tokenizer.ggml.model"].contents() == "llama"
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and tokens[3] == "<0x00>" and tokens[259] == PAD


def test_tokenizer_model_rebuilt_where_a_fine_tune_lost_it(sp_data, tinystories, tmp_path):
    """transformers' save_pretrained (after sft/dpo) writes no tokenizer.model: babyllama rebuilds an equivalent
    one from tokenizer.json, so exports of fine-tunes still carry it (llama.cpp's converter needs it)."""
    import shutil

    original = _sp(sp_data / "tokenizer")
    shutil.copytree(sp_data / "tokenizer", tmp_path / "tok")
    (tmp_path / "tok" / "tokenizer.model").unlink()
    tok = load_tokenizer(tmp_path / "tok")
    assert tok.sentencepiece_model is not None
    tok.save(tmp_path / "saved")
    rebuilt = _sp(tmp_path / "saved")
    stories = (tinystories / "valid.txt").read_text(encoding="utf-8").split("<|endoftext|>")[:100]
    for text in [s.strip() for s in stories] + [t for t in ADVERSARIAL if "<|" not in t]:
        assert rebuilt.encode(text) == original.encode(text), repr(text[:80])
    assert [rebuilt.id_to_piece(i) for i in range(264)] == [original.id_to_piece(i) for i in range(264)]
