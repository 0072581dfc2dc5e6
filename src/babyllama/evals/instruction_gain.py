"""Does the instruction matter? A teacher-forced companion to the words task, cheap and free of decoding luck.

For each held-out prompt that carries its reference story ('output', as `prepare-sft` writes them), and each
requested word, take the token where the word first appears in that story and compare its log-probability under
the prompt's own instruction with its log-probability under another prompt's instruction (same story after it).
The mean difference is how many nats the instruction adds to the words it asks for: about 0 for a model that writes
the same story whatever it is asked, several nats for one that copies words from its instruction. Also reported:
how often that token is the model's top prediction under the right instruction, and under the other one.
"""

from __future__ import annotations

from typing import Optional

import torch

from babyllama.evals.word_match import find_word


def first_word_token(story: str, word: str, offsets: list[tuple[int, int]]) -> Optional[int]:
    """Index of the token holding the first character of `word`'s first use in `story` (any case, plain
    inflections as the words metric counts them), or None when the story never uses it."""
    match = find_word(word, story)
    if match is None:
        return None
    for index, (start, end) in enumerate(offsets):
        if start <= match.start() < end:
            return index
    return None


def _log_probs(model, ids: list[int], device) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=device))
    return torch.log_softmax(logits[0].float(), dim=-1)


def instruction_gain(session, prompts: list[dict], device="cpu") -> Optional[dict]:
    """{'gain_nats', 'top1_right', 'top1_other', 'words'} over the prompts that have an 'output' story (None when
    none has). `session` is a ChatSession: its model, tokenizer and chat template."""
    model, tokenizer = session.model, session.hf_tokenizer
    context = model.config.max_seq_len
    usable = [p for p in prompts if p.get("output")]
    if len(usable) < 2:
        return None
    gains, top1_right, top1_other = [], [], []
    for index, prompt in enumerate(usable):
        other = usable[(index + 1) % len(usable)]  # a different instruction before the same story
        encoded = tokenizer(prompt["output"], add_special_tokens=False, return_offsets_mapping=True)
        story_ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        # Words the other instruction also asks for would credit it too: they say nothing about this one.
        also_asked = {word.lower() for word in other["words"]}
        words = [w for w in prompt["words"] if w.lower() not in also_asked]
        positions = {w: first_word_token(prompt["output"], w, offsets) for w in words}
        positions = {w: k for w, k in positions.items() if k is not None}
        if not positions:
            continue
        scores = {}
        for label, instruction in (("right", prompt["instruction"]), ("other", other["instruction"])):
            head = session.prompt_ids([{"role": "user", "content": instruction}])
            log_probs = _log_probs(model, (head + story_ids)[:context], device)
            for word, k in positions.items():
                at = len(head) + k - 1  # the position that predicts the word's token
                if at + 1 >= context:
                    continue
                row = log_probs[at]
                scores.setdefault(word, {})[label] = (row[story_ids[k]].item(),
                                                      int(row.argmax().item() == story_ids[k]))
        for both in scores.values():
            if len(both) == 2:
                gains.append(both["right"][0] - both["other"][0])
                top1_right.append(both["right"][1])
                top1_other.append(both["other"][1])
    if not gains:
        return None
    return {"gain_nats": sum(gains) / len(gains), "top1_right": sum(top1_right) / len(gains),
            "top1_other": sum(top1_other) / len(gains), "words": len(gains)}
