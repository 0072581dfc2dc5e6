"""The `words` task: does the model write a story that uses the words it was asked for?

Prompts come from `babyllama prepare-sft` (their `words` field). Each model writes one story per prompt through
its chat template; the score is the share of requested words that appear in the story (evals/word_match.py: whole
words, any case, with a plain inflection), averaged over prompts, plus the share of prompts with
every word used. Greedy decoding by default, so the numbers repeat. Beside them, the instruction gain
(evals/instruction_gain.py): whether the instruction moves the model's probabilities at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

from babyllama.errors import BabyLlamaError
from babyllama.evals.word_match import score


def read_prompts(path: str | Path, limit: Optional[int] = None) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise BabyLlamaError(f"--prompts {path}: no such file (make one with `babyllama prepare-sft --heldout N`)")
    prompts = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as err:
                raise BabyLlamaError(f"{path}, line {line_no}: not valid JSON ({err})") from None
            if not isinstance(record, dict) or not isinstance(record.get("words"), list) or \
                    not record.get("instruction"):
                raise BabyLlamaError(f"{path}, line {line_no}: a words prompt needs 'instruction' and a 'words' list")
            prompts.append(record)
            if limit and len(prompts) >= limit:
                break
    if not prompts:
        raise BabyLlamaError(f"--prompts {path}: no prompts")
    return prompts


def generate_stories(model_path, prompts: list[dict], max_new_tokens: int, temperature: float, seed: int,
                     batch_size: int, device="cpu", guidance_scale: float = 1.0, negative_prompt: str = "") -> list[str]:
    """One story per prompt; model_path may also be a loaded ChatSession (to sample it several times).
    guidance_scale != 1: classifier-free guidance against the chat turn `negative_prompt` (infer/generate.py)."""
    from babyllama.infer.chat import ChatSession
    from babyllama.infer.generate import generate

    session = model_path if isinstance(model_path, ChatSession) else ChatSession(model_path, device)
    stories = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        ids = [session.prompt_ids([{"role": "user", "content": p["instruction"]}]) for p in chunk]
        twin = session.prompt_ids([{"role": "user", "content": negative_prompt}])
        longest = max(len(i) for i in ids)
        if longest >= session.model.config.max_seq_len:
            context = session.model.config.max_seq_len
            raise BabyLlamaError(f"a prompt is {longest} tokens; the model's context is {context}")
        outs = generate(session.model, ids, max_new_tokens, temperature=temperature, seed=seed + start,
                        eos_id=session.hf_tokenizer.eos_token_id, stop_ids=(session.end_id,),
                        guidance_scale=guidance_scale, unconditional=[twin] * len(ids))
        stories += [session.hf_tokenizer.decode(o, skip_special_tokens=True) for o in outs]
    return stories


def evaluate_words(models: dict[str, str], prompts: list[dict], max_new_tokens: int = 256, temperature: float = 0.0,
                   seed: int = 0, batch_size: int = 16, device="cpu", log: Callable[[str], None] = print,
                   guidance_scale: float = 1.0, negative_prompt: str = "") -> dict:
    """{label: {'word_share', 'all_words', 'instruction_gain', 'prompts', 'samples'}} for each model, on the same
    prompts (instruction_gain: see evals/instruction_gain.py; None when the prompts carry no reference stories)."""
    from babyllama.evals.instruction_gain import instruction_gain
    from babyllama.infer.chat import ChatSession

    results = {}
    for label, path in models.items():
        log(f"{label}: generating {len(prompts)} stories with {path}")
        session = ChatSession(path, device)
        stories = generate_stories(session, prompts, max_new_tokens, temperature, seed, batch_size, device,
                                   guidance_scale, negative_prompt)
        shares = [score(p["words"], s) for p, s in zip(prompts, stories)]
        results[label] = {
            "model": str(path), "prompts": len(prompts), "guidance_scale": guidance_scale,
            "word_share": sum(shares) / len(shares),
            "all_words": sum(s == 1.0 for s in shares) / len(shares),
            "instruction_gain": instruction_gain(session, prompts, device),
            "samples": [{"instruction": p["instruction"], "words": p["words"], "story": s, "share": sh}
                        for p, s, sh in zip(prompts[:5], stories[:5], shares[:5])],
        }
    return results


def table(results: dict) -> str:
    lines = ["| model | prompts | requested words used | prompts with every word | instruction gain (nats) |",
             "|---|---|---|---|---|"]
    for label, r in results.items():
        gain = r.get("instruction_gain")
        gain_text = f"{gain['gain_nats']:+.2f}" if gain else "n/a (prompts without stories)"
        lines.append(f"| {label} ({r['model']}) | {r['prompts']} | {r['word_share']:.1%} | {r['all_words']:.1%} "
                     f"| {gain_text} |")
    return "\n".join(lines)
