"""The words metric's rule: a requested word counts as used when the story has it as a whole word, in any case, or
with a plain inflection (jump -> jumps / jumped / jumping)."""

from __future__ import annotations

import re
from typing import Optional


def find_word(word: str, text: str) -> Optional[re.Match]:
    """The first use of `word` in `text`."""
    # IGNORECASE rather than lower(): the match's offsets must index `text` itself
    return re.search(rf"\b{re.escape(word)}(s|es|d|ed|ing)?\b", text, re.IGNORECASE)


def word_used(word: str, text: str) -> bool:
    return find_word(word, text) is not None


def score(words: list[str], story: str) -> float:
    """The share of `words` the story uses."""
    return sum(word_used(w, story) for w in words) / len(words) if words else 0.0
