"""The chat-format corpora of the copy experiments (README beside this file), from the training stories only.

    python make_corpora.py STORIES_TXT OUT_FOLDER
writes OUT_FOLDER/{dense-chunks,chunks-and-lists}/train.txt; `babyllama prepare --tokenizer <the base's data>`
encodes them.
    python make_corpora.py --lists HELDOUT_PROMPTS OUT_JSONL
writes the held-out prompts with the list answer ("The w2. The w1. The w3.") as their story, to measure the
instruction gain of pure copying. (The full-story corpus, p1, is `prepare-sft --num_words 3 --num_words_max 15 --sets_per_story 2`
rendered the same way.) Each document is one chat turn pair, as the chat template renders it without <s>, which
`prepare` adds to every document.
"""
import random
import re
import sys
from pathlib import Path

from babyllama.tune.stories import content_words, instruction_for

SENTENCE = re.compile(r"[^.!?]+[.!?]")


def turn(words, answer):
    return f"<|user|>{instruction_for(words, None)}<|end|><|assistant|>{answer}<|end|>"


def main(stories_path, out):
    stories = [s.strip() for s in Path(stories_path).read_text().split("<|endoftext|>") if s.strip()]
    for name, seed, with_lists in (("dense-chunks", 0, False), ("chunks-and-lists", 1, True)):
        rng, docs = random.Random(seed), []
        for story in stories:
            sentences = SENTENCE.findall(story)
            for start in range(0, len(sentences), 3):  # three sentences at a time: 3-6 of their words asked for
                chunk = " ".join(s.strip() for s in sentences[start:start + 3])
                candidates = content_words(chunk)
                if len(candidates) < 3:
                    continue
                words = rng.sample(candidates, min(len(candidates), rng.randint(3, 6)))
                docs.append(turn(words, chunk))
                if with_lists:  # pure copying: the words alone, in a new order
                    order = words[:]
                    rng.shuffle(order)
                    docs.append(turn(words, " ".join(f"The {w}." for w in order)))
        rng.shuffle(docs)
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train.txt").write_text("\n<|endoftext|>\n".join(docs) + "\n")
        print(f"{folder}: {len(docs)} documents")


def list_prompts(heldout, out):
    import json

    rng = random.Random(2)
    with open(heldout) as source, open(out, "w") as target:
        for line in source:
            prompt = json.loads(line)
            order = prompt["words"][:]
            rng.shuffle(order)
            target.write(json.dumps({**prompt, "output": " ".join(f"The {w}." for w in order)}) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "--lists":
        list_prompts(*sys.argv[2:4])
    else:
        main(*sys.argv[1:3])
