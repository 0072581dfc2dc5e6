"""tiktoken with our merges as ranks gives exactly the ids of `tokenizers`, or is not used."""

import json
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from babyllama.data.encode import fast_encoder, reference_encoder, tiktoken_blocker
from babyllama.data.sources import read_documents
from babyllama.data.tokenizer import CHAT_TOKENS, load_tokenizer, train_tokenizer

ADVERSARIAL = [
    "", " ", "  ", "\n", "\n\n\n", "a  b   c    d", "trailing   ", "   leading", "tab\tand\t\ttabs \t \t",
    "CRLF line\r\nnext\r\n\r\nlast\r", "\r\r\n\n\r", "nbsp\u00a0here\u00a0\u00a0 x", "ideographic\u3000space",
    "digits 1234567890 0.5 3,141,592 ١٢٣ ²³ 1st 2nd", "12345678901234567890123456789",
    "emoji 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ 🤖🤖🤖", "CJK 你好，世界。日本語のテキスト 한국어", "RTL مرحبا بالعالم שלום",
    "combining e\u0301 a\u0308 Z\u0335\u0321", "zero\u200bwidth\u200djoiner\ufeffbom", "\x00nul\x01ctl\x7f",
    "<s>", "</s>", "<unk>", "<pad>", "<s></s><s>", "a<s>b</s>c", "< s>", "<s", "s>", "<<s>>", "<//s>", "<|user|>hi<|end|>",
    "<|system|><|assistant|>", "<|endoftext|>", "<| user |>", "<|user|", "<pad><pad>x<pad>",
    "it's they're we've I'm you'll he'd IT'S THEY'RE", "'s 's' ''s", "don't  'tis 'twas",
    "punctuation!!! ... ??? --- *** ((( ))) \"quotes\" «guillemets» „low“", "mixed123abc abc123 a1b2c3",
    "Ünïcödé ÀÉÎÕÜ ß ẞ ﬁ ligature", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math 𝟙𝟚𝟛", "\u2028line sep\u2029para sep", "a\u0085next line",
    "Once upon a time, there was a little girl named Lily.\n\nShe liked to play outside.",
    " " * 50 + "x" + "\n" * 20 + "y", "a" * 300, "ab" * 200, "\t\n \r\n \u00a0\n",
]


@pytest.fixture(scope="module")
def tokenizers_under_test(prepared_512, tinystories):
    stories = list(read_documents(tinystories / "train.txt"))
    big = train_tokenizer(stories, 2048, show_progress=False)
    return [load_tokenizer(prepared_512 / "tokenizer"), big]


@pytest.fixture(scope="module")
def shared_stories(tinystories):
    return list(read_documents(tinystories / "train.txt")) + list(read_documents(tinystories / "valid.txt"))


def test_tiktoken_is_chosen_for_our_byte_level_bpe(tokenizers_under_test):
    for tokenizer in tokenizers_under_test:
        assert fast_encoder(tokenizer).kind == "tiktoken"


def test_identical_ids_on_every_shared_story(tokenizers_under_test, shared_stories):
    assert len(shared_stories) == 6235 + 220
    for tokenizer in tokenizers_under_test:
        fast, reference = fast_encoder(tokenizer), reference_encoder(tokenizer)
        differing = [s for s in shared_stories if fast.encode(s) != reference.encode(s)]
        assert differing == [], f"{len(differing)} stories differ at vocab {tokenizer.vocab_size}"


def test_identical_ids_on_adversarial_text(tokenizers_under_test):
    texts = ADVERSARIAL + ["".join(ADVERSARIAL), "\n".join(ADVERSARIAL)]
    for tokenizer in tokenizers_under_test:
        fast, reference = fast_encoder(tokenizer), reference_encoder(tokenizer)
        for text in texts:
            assert fast.encode(text) == reference.encode(text), repr(text)
    # Special tokens typed in a document are cut out as their ids, exactly as tokenizers does.
    tokenizer = tokenizers_under_test[0]
    ids = fast_encoder(tokenizer).encode("a<s>b<|user|>")
    assert tokenizer.bos_id in ids and tokenizer.token_id(CHAT_TOKENS[1]) in ids


@lru_cache(maxsize=1)
def _encoders(folder: str):
    tokenizer = load_tokenizer(folder)
    return fast_encoder(tokenizer), reference_encoder(tokenizer)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aAbé é1 2\n\r\t'sSlLdDmtTvVeE<>/|_-.,!?😀中\u00a0\u0301\u200d")) |
               st.characters(codec="utf-8"), max_size=80))
def test_identical_ids_on_random_text(prepared_512, text):
    fast, reference = _encoders(str(prepared_512 / "tokenizer"))
    assert fast.encode(text) == reference.encode(text)


def test_encoders_survive_pickling(prepared_512):
    import pickle

    encoder = fast_encoder(load_tokenizer(prepared_512 / "tokenizer"))
    encoder.encode("warm up")
    again = pickle.loads(pickle.dumps(encoder))
    assert again.encode("Once upon a time") == encoder.encode("Once upon a time")


@pytest.mark.parametrize("change, why", [
    (lambda s: s.update(normalizer={"type": "NFC"}), "normalizer"),
    (lambda s: s["pre_tokenizer"].update(add_prefix_space=True), "pre-tokenizer"),
    (lambda s: s["model"].update(byte_fallback=True), "byte_fallback"),
    (lambda s: s["added_tokens"].append({**s["added_tokens"][1], "id": 99999, "content": "<s>x"}), "part of another"),
    (lambda s: s["added_tokens"][1].update(lstrip=True), "strips"),
    (lambda s: s["model"].update(merges=list(reversed(s["model"]["merges"]))), "increasing ids"),
])
def test_tokenizers_tiktoken_cannot_match_fall_back(prepared_512, change, why):
    spec = json.loads((prepared_512 / "tokenizer" / "tokenizer.json").read_text())
    assert tiktoken_blocker(spec) is None
    change(spec)
    assert why in tiktoken_blocker(spec)
