"""Importing Hugging Face Llama checkpoints made by `transformers` itself, with a Llama-2-style tokenizer
(SentencePiece conventions: "▁" for spaces, <0xXX> byte fallback, no <pad>), and continuing to pretrain them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from babyllama.modelio import load_model


def llama2_style_tokenizer(text: str, merges_wanted: int = 120):
    """<unk> <s> </s>, the 256 <0xXX> byte tokens, then characters and BPE merges -- Llama 2's layout."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    draft = Tokenizer(models.BPE())
    draft.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    draft.train_from_iterator(text.split("\n"), trainers.BpeTrainer(vocab_size=merges_wanted + 60, show_progress=False))
    learned = json.loads(draft.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    for token, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m) if not isinstance(m, str) else tuple(m.split(" ", 1))
                                                    for m in learned["merges"]],
                               unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return tok


@pytest.fixture(scope="module")
def hf_tokenizer_dir(tinystories, tmp_path_factory):
    from transformers import PreTrainedTokenizerFast

    text = (tinystories / "train.txt").read_text(encoding="utf-8")[:200_000]
    fast = PreTrainedTokenizerFast(tokenizer_object=llama2_style_tokenizer(text), bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", clean_up_tokenization_spaces=False)
    folder = tmp_path_factory.mktemp("hf_tok")
    fast.save_pretrained(str(folder))
    return folder, len(fast)


def make_hf_model(folder, vocab_size, tie: bool, kv_heads: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=64,
                         rms_norm_eps=1e-5, tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():  # random norms too, so a swapped norm would show
            p.copy_(torch.rand_like(p) + 0.5 if "norm" in name else torch.randn_like(p) * 0.05)
    model.save_pretrained(str(folder))
    return model


CASES = [("tied-gqa", True, 2), ("untied-mha", False, 4), ("untied-gqa-1kv", False, 1)]


@pytest.mark.parametrize("name,tie,kv_heads", CASES)
def test_import_hf_llama_logits_equal_transformers(tmp_path, hf_tokenizer_dir, name, tie, kv_heads):
    import shutil

    tok_dir, tok_size = hf_tokenizer_dir
    vocab = tok_size + 3 if tok_size % 2 == 0 else tok_size + 2  # an odd size, beyond the tokenizer's
    assert vocab % 2 == 1
    folder = tmp_path / name
    hf = make_hf_model(folder, vocab, tie, kv_heads)
    for f in tok_dir.iterdir():
        shutil.copy(f, folder / f.name)
    model, tokenizer, _ = load_model(folder)
    assert tokenizer is not None and tokenizer.vocab_size == tok_size and tokenizer.pad_id is None
    assert model.config.tie_embeddings == tie and model.config.n_kv_heads == kv_heads
    ids = [1] + tokenizer.encode("Once upon a time, there was a little dog named Spot. Ünïcode fällt zurück!")
    assert any(3 <= i < 259 for i in ids)  # byte fallback was exercised
    # bits per byte counts the text's bytes: "▁" is a space, <0xXX> one byte (plus the space Metaspace prepends)
    lengths = tokenizer.token_byte_lengths()
    text = "Once upon a time, there was a little dog named Spot. Ünïcode fällt zurück!"
    assert int(lengths[ids[1:]].sum()) == len(text.encode("utf-8")) + 1
    with torch.no_grad():
        ours = model(torch.tensor([ids]))
        theirs = hf(torch.tensor([ids])).logits
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def test_import_pytorch_bin_and_sharded(tmp_path, hf_tokenizer_dir):
    """The older pytorch_model.bin and a sharded safetensors index load to the same weights."""
    tok_dir, tok_size = hf_tokenizer_dir
    hf = make_hf_model(tmp_path / "ref", tok_size, False, 2)
    hf.save_pretrained(str(tmp_path / "sharded"), max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    binary = tmp_path / "bin"
    binary.mkdir()
    (binary / "config.json").write_text((tmp_path / "ref" / "config.json").read_text())
    torch.save(hf.state_dict(), binary / "pytorch_model.bin")
    reference = load_model(tmp_path / "ref", need_tokenizer=False)[0].state_dict()
    for folder in (tmp_path / "sharded", binary):
        state = load_model(folder, need_tokenizer=False)[0].state_dict()
        assert all(torch.equal(state[k], reference[k]) for k in reference)


def test_hf_round_trip_identical_weights(tmp_path, hf_tokenizer_dir):
    """babyllama -> Hugging Face folder -> babyllama gives identical weights, and transformers loads it."""
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from babyllama.export.hf import export_hf

    tok_dir, tok_size = hf_tokenizer_dir
    make_hf_model(tmp_path / "src", tok_size, False, 2)
    for f in tok_dir.iterdir():
        shutil.copy(f, tmp_path / "src" / f.name)
    model, tokenizer, _ = load_model(tmp_path / "src")
    export_hf(tmp_path / "src", tmp_path / "out")
    again, again_tok, _ = load_model(tmp_path / "out")
    assert again_tok.hash == tokenizer.hash and again_tok.vocab_size == tok_size
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
    hf_tok = AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    text = "The cat sat on the mat."
    assert hf_tok(text)["input_ids"] == [1] + tokenizer.encode(text)
    ids = torch.tensor([[1] + tokenizer.encode(text)])
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, model(ids), atol=1e-5)


def test_continued_pretraining_with_imported_tokenizer(tmp_path, hf_tokenizer_dir, tinystories):
    """prepare --tokenizer DIR, then pretrain --init_from DIR: the imported model trains on its own vocabulary."""
    import shutil

    from babyllama.data.prepare import PrepareConfig, prepare
    from babyllama.data.shards import PretokenizedData
    from babyllama.train.loop import pretrain

    tok_dir, tok_size = hf_tokenizer_dir
    src = tmp_path / "imported"
    make_hf_model(src, tok_size + 1, True, 2)
    for f in tok_dir.iterdir():
        shutil.copy(f, src / f.name)
    stories = (tinystories / "valid.txt").read_text(encoding="utf-8").split("<|endoftext|>")[:60]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.txt").write_text("<|endoftext|>".join(stories[:50]))
    (corpus / "valid.txt").write_text("<|endoftext|>".join(stories[50:]))
    data = tmp_path / "data"
    prepare(PrepareConfig(data=str(corpus), tokenizer=str(src), out=str(data), disable_tqdm=True), log=lambda _: None)
    prepared = PretokenizedData(data)
    assert prepared.tokenizer.vocab_size == tok_size
    train = prepared.tokens("train")
    assert int(np.asarray(train).max()) < tok_size

    start = load_model(src)[0].state_dict()
    run = pretrain(dict(data=str(data), init_from=str(src), output_dir=str(tmp_path / "runs"), run_name="cont",
                        max_steps=4, per_device_train_batch_size=4, seq_len=32, learning_rate=1e-3, warmup_steps=0,
                        logging_steps=2, eval_max_tokens=512, num_samples=1, sample_max_new_tokens=8,
                        disable_tqdm=True, torch_compile=False, bf16=False, device="cpu"), {}, log=lambda _: None)
    tuned, tuned_tok, _ = load_model(run)
    assert tuned.config == load_model(src)[0].config
    assert tuned_tok.vocab_size == tok_size
    changed = [k for k, v in tuned.state_dict().items() if not torch.equal(v, start[k])]
    assert changed, "continued pretraining did not change the weights"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in m for m in metrics)


def test_imported_model_exports_to_llama2c_and_gguf(tmp_path, hf_tokenizer_dir, tinystories):
    """A SentencePiece-style vocabulary keeps its conventions: run.c pieces with spaces and <0xXX> bytes that
    run.c's encoder (its dummy-prefix space is the "▁" Metaspace prepends) and decoder agree with; GGUF as
    llama.cpp's "llama" tokenizer model with scores and byte tokens."""
    import shutil

    import gguf
    from test_export import read_llama2c, read_runc_tokenizer, reference_forward, runc_decode, runc_encode

    from babyllama.export.gguf import export_gguf
    from babyllama.export.llama2c import export_llama2c

    tok_dir, tok_size = hf_tokenizer_dir
    src = tmp_path / "imported"
    make_hf_model(src, tok_size + 2, False, 2)
    for f in tok_dir.iterdir():
        shutil.copy(f, src / f.name)
    model, tokenizer, _ = load_model(src)
    model_file, tok_file = export_llama2c(src, tmp_path / "l2c", log=lambda _: None)
    cfg, w = read_llama2c(model_file)
    ids = [1] + tokenizer.encode("Once upon a time, Tom saw a big red ball.")
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0].double().numpy()
    assert np.abs(reference_forward(cfg, w, ids) - ours).max() < 1e-4

    _, pieces, scores = read_runc_tokenizer(tok_file, cfg["vocab"])
    assert pieces[3 + 0x41] == b"<0x41>" and pieces[-1].startswith(b"<extra_")
    stories = (tinystories / "valid.txt").read_text(encoding="utf-8").splitlines()[:30]
    for line in filter(None, stories):
        line_ids = tokenizer.encode(line)
        assert runc_decode(line_ids, pieces).decode("utf-8") == tokenizer.decode(line_ids)
        if line.isascii():
            assert runc_encode(line, pieces, scores) == line_ids, line

    reader = gguf.GGUFReader(export_gguf(src, tmp_path / "m.gguf", "f16"))
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    assert field("tokenizer.ggml.model") == "llama"
    tokens, types = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type")
    assert tokens[3 + 0x41] == "<0x41>" and types[3 + 0x41] == gguf.TokenType.BYTE
    assert types[1] == gguf.TokenType.CONTROL and types[-1] == gguf.TokenType.UNUSED
    assert len(field("tokenizer.ggml.scores")) == cfg["vocab"]
    assert "tokenizer.ggml.padding_token_id" not in reader.fields
