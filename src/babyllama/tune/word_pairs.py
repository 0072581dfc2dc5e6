"""Preference pairs from a model's own stories, judged by the words metric (for `babyllama dpo`).

For each words prompt the model writes several stories (sampled); the chosen answer is the story that uses the
most requested words (all of them, by default), the rejected one a story that uses fewer. Prompts whose samples
all score the same teach nothing and are skipped (counted). With `reference_chosen`, a prompt whose samples never
use every word takes the prompt's own source story (the `output` field prepare-sft writes) as chosen.
"""

from __future__ import annotations

from typing import Callable, Optional

from babyllama.errors import BabyLlamaError


def pick_pair(prompt: dict, stories: list[str], min_chosen_share: float = 1.0,
              reference_chosen: bool = False) -> Optional[dict]:
    """One pair for a prompt from its sampled stories, or None when no pair says anything."""
    from babyllama.evals.word_match import score

    scored = [(score(prompt["words"], s), s) for s in stories if s.strip()]
    if not scored:
        return None
    best = max(scored, key=lambda x: x[0])
    worst = min(scored, key=lambda x: x[0])
    chosen, source = best, "sample"
    if best[0] < min_chosen_share:
        reference = prompt.get("output")
        if not (reference_chosen and reference and score(prompt["words"], reference) >= min_chosen_share):
            return None
        chosen, source = (score(prompt["words"], reference), reference), "reference"
    if worst[0] >= chosen[0]:
        return None
    return {"instruction": prompt["instruction"], "chosen": chosen[1], "rejected": worst[1],
            "words": prompt["words"], "chosen_share": chosen[0], "rejected_share": worst[0],
            "chosen_source": source}


def word_pairs(model_path: str, prompts: list[dict], samples_per_prompt: int = 4, temperature: float = 0.8,
               max_new_tokens: int = 256, seed: int = 0, batch_size: int = 16, device="cpu",
               min_chosen_share: float = 1.0, reference_chosen: bool = False,
               log: Callable[[str], None] = print) -> tuple[list[dict], dict]:
    """(pairs, stats) from `samples_per_prompt` sampled stories per prompt."""
    from babyllama.evals.words import generate_stories
    from babyllama.infer.chat import ChatSession

    if samples_per_prompt < 2:
        raise BabyLlamaError("--samples_per_prompt must be at least 2 (a pair needs two stories)")
    if temperature <= 0:
        raise BabyLlamaError("--temperature must be above 0: greedy decoding writes the same story every time")
    if not 0 < min_chosen_share <= 1:
        raise BabyLlamaError("--min_chosen_share must be in (0, 1]")
    session = ChatSession(model_path, device)
    samples: list[list[str]] = [[] for _ in prompts]
    for k in range(samples_per_prompt):
        log(f"sample {k + 1}/{samples_per_prompt}: {len(prompts)} stories")
        for i, story in enumerate(generate_stories(session, prompts, max_new_tokens, temperature,
                                                   seed + 1_000_003 * k, batch_size, device)):
            samples[i].append(story)
    pairs = []
    for prompt, stories in zip(prompts, samples):
        pair = pick_pair(prompt, stories, min_chosen_share, reference_chosen)
        if pair:
            pairs.append(pair)
    from babyllama.evals.word_match import score

    shares = [score(p["words"], s) for p, stories in zip(prompts, samples) for s in stories]
    stats = {"prompts": len(prompts), "pairs": len(pairs), "samples": len(shares),
             "sample_word_share": sum(shares) / max(1, len(shares)),
             "chosen_from_reference": sum(p["chosen_source"] == "reference" for p in pairs)}
    return pairs, stats
