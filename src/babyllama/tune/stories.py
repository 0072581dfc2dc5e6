"""Story instructions from real stories, in the spirit of TinyStoriesInstruct:

    Write a story that uses the words: jump, river, happy.
    [The story should contain the sentence: "The sun was warm."]
    -> the story itself

The words are content words drawn from the story (lower-case in it, so not names; no function words), so the
answer is a real story that satisfies its instruction.
"""

from __future__ import annotations

import random
import re
from typing import Iterable, Optional

from babyllama.errors import BabyLlamaError

# Function words and very common story words that say nothing about a story's content.
STOPWORDS = set("""
a about above after again against all also am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just let me more most my myself no nor not now of off on
once only or other our ours out over own same she should so some such than that the their theirs them themselves
then there these they this those through to too under until up upon very was we were what when where which while
who whom why will with would you your yours yourself said says say one two day time very went got get go goes going
came come comes saw see sees looked look looks wanted want wants like liked likes made make makes took take takes
asked ask told tell back again away very really much many lot lots thing things something anything everything
nothing someone everyone always never ever still even too also yes okay oh wow """.split())
WORD = re.compile(r"[A-Za-z]+")
SENTENCE = re.compile(r"[^.!?]+[.!?]")


def content_words(story: str) -> list[str]:
    """Distinct candidate words in order of first use: lower-case in the story, 3+ letters, not stopwords."""
    seen, out = set(), []
    for word in WORD.findall(story):
        if not word.islower() or len(word) < 3 or word in STOPWORDS or word in seen:
            continue
        seen.add(word)
        out.append(word)
    return out


def pick_sentence(story: str, rng: random.Random) -> Optional[str]:
    sentences = [s.strip() for s in SENTENCE.findall(story)]
    sentences = [s for s in sentences if 4 <= len(s.split()) <= 14 and '"' not in s]
    return rng.choice(sentences) if sentences else None


def instruction_for(words: list[str], sentence: Optional[str]) -> str:
    text = "Write a story that uses the words: " + ", ".join(words) + "."
    if sentence:
        text += f' The story should contain the sentence: "{sentence}"'
    return text


def with_words(example: dict, words: list[str]) -> dict:
    """The example asking for these words instead (its sentence request kept)."""
    return {**example, "instruction": instruction_for(words, example.get("sentence")), "words": list(words)}


def story_example_sets(stories: Iterable[str], num_words: int = 3, sentence_prob: float = 0.3, seed: int = 0,
                       max_words: Optional[int] = None, sets_per_story: int = 1,
                       num_words_max: Optional[int] = None) -> list[list[dict]]:
    """Per usable story, up to `sets_per_story` examples asking for different word sets (each may also ask for a
    sentence of the story): [{'instruction', 'input', 'output', 'words', 'sentence'}, ...]. With `num_words_max`,
    each example asks for between num_words and num_words_max words (more words: more places in each story where
    the model learns to copy a word from its instruction)."""
    num_words_max = num_words if num_words_max is None else num_words_max
    if num_words <= 0:
        raise BabyLlamaError("--num_words must be positive")
    if num_words_max < num_words:
        raise BabyLlamaError(f"--num_words_max ({num_words_max}) must be at least --num_words ({num_words})")
    if sets_per_story <= 0:
        raise BabyLlamaError("--sets_per_story must be positive")
    if not 0 <= sentence_prob <= 1:
        raise BabyLlamaError("--sentence_prob must be in [0, 1]")
    rng = random.Random(seed)
    out = []
    for story in stories:
        story = story.strip()
        if not story or (max_words is not None and len(story.split()) > max_words):
            continue
        candidates = content_words(story)
        if len(candidates) < num_words:
            continue
        examples, seen = [], set()
        for _ in range(sets_per_story * 3):  # a few tries: short stories have few distinct sets
            # no extra draw without a range: the same seed still makes the same examples as before
            count = num_words if num_words_max == num_words else rng.randint(num_words, num_words_max)
            words = rng.sample(candidates, min(count, len(candidates)))
            if frozenset(words) in seen:
                continue
            seen.add(frozenset(words))
            sentence = pick_sentence(story, rng) if rng.random() < sentence_prob else None
            examples.append({"instruction": instruction_for(words, sentence), "input": "", "output": story,
                             "words": words, "sentence": sentence})
            if len(examples) == sets_per_story:
                break
        out.append(examples)
    return out


def story_examples(stories: Iterable[str], num_words: int = 3, sentence_prob: float = 0.3, seed: int = 0,
                   max_words: Optional[int] = None) -> list[dict]:
    """One instruction example per usable story."""
    return [sets[0] for sets in story_example_sets(stories, num_words, sentence_prob, seed, max_words)]


def instruct_text(example: dict) -> str:
    """The example as one plain-text document, TinyStoriesInstruct's format, for pretraining on:

        Words: jump, river, happy
        Sentence: The sun was warm.
        Story: Once upon a time ...
    """
    lines = ["Words: " + ", ".join(example["words"])]
    if example.get("sentence"):
        lines.append("Sentence: " + example["sentence"])
    lines.append("Story: " + example["output"])
    return "\n".join(lines)


def fits(example: dict, tokenizer, context: int) -> bool:
    """Whether the whole conversation fits the model's context (an answer cut short trains it wrong)."""
    messages = [{"role": "user", "content": example["instruction"]},
                {"role": "assistant", "content": example["output"]}]
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]) <= context


def fits_context(examples: list[dict], tokenizer, context: int) -> tuple[list[dict], int]:
    kept = [example for example in examples if fits(example, tokenizer, context)]
    return kept, len(examples) - len(kept)
