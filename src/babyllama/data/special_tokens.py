"""The ids every babyllama tokenizer shares, whatever its kind (see data/tokenizer.py for the layout)."""

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
LEADING_SPECIALS = (UNK, BOS, EOS)
TRAILING_SPECIALS = (PAD,) + CHAT_TOKENS
SPECIAL_TOKENS = LEADING_SPECIALS + TRAILING_SPECIALS
BYTE_OFFSET = len(LEADING_SPECIALS)
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)
SENTENCEPIECE_FILE = "tokenizer.model"
TOKENIZER_TYPES = ("bpe", "sentencepiece")
