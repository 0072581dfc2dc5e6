"""Batched generation with a key/value cache: temperature, top-k, top-p, a seed, stop at EOS, and optional
classifier-free guidance (Sanchez et al. 2023, "Stay on topic with Classifier-Free Guidance"): each prompt is
decoded beside an unconditional twin (the same chat turn without the instruction), and the next token is drawn
from log p(x | prompt) scaled away from log p(x | twin) by guidance_scale, which amplifies what the instruction
changes in the model's own predictions. Scale 1 is plain decoding.

Prompts of different lengths are left-padded; padded positions are masked out of attention and rotary
positions start at each prompt's first real token, so a prompt decodes the same alone or in a batch.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Optional

import torch

from babyllama.checks import check_sampling
from babyllama.errors import BabyLlamaError
from babyllama.model import KVCache, Llama


def sample_next(logits: torch.Tensor, temperature: float, top_k: Optional[int], top_p: Optional[float],
                generator: Optional[torch.Generator]) -> torch.Tensor:
    """One token id per row of logits (batch, vocab). Temperature 0 is greedy."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Drop tokens once the mass before them already reaches top_p (the top token always stays).
        drop = cumulative - sorted_logits.softmax(dim=-1) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def generate(model: Llama, prompts: list[list[int]], max_new_tokens: int, *, temperature: float = 0.8,
             top_k: Optional[int] = None, top_p: Optional[float] = None, seed: Optional[int] = None,
             eos_id: Optional[int] = None, stop_ids: tuple[int, ...] = (),
             on_token: Optional[Callable[[int, int], None]] = None, autocast=contextlib.nullcontext,
             guidance_scale: float = 1.0, unconditional: Optional[list[list[int]]] = None) -> list[list[int]]:
    """Continue each prompt (a list of ids, BOS included) and return the new ids, up to and without EOS.
    With guidance_scale != 1, `unconditional` holds one twin prompt per prompt (see the module's docstring)."""
    check_sampling(temperature, top_k, top_p)
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (start it with BOS)")
    guided = guidance_scale != 1.0
    rows = len(prompts)  # the rows whose text is returned
    if guided:
        if unconditional is None or len(unconditional) != rows or any(len(p) == 0 for p in unconditional):
            raise ValueError("guidance_scale needs one non-empty unconditional prompt per prompt")
        if max(len(p) for p in unconditional) >= model.config.max_seq_len:
            raise BabyLlamaError(f"the negative prompt has {max(len(p) for p in unconditional)} tokens; the model's "
                                 f"context is {model.config.max_seq_len}: shorten --negative_prompt")
        prompts = list(prompts) + list(unconditional)  # decoded as one batch; the twins follow the same tokens
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    context = model.config.max_seq_len
    longest = max(len(p) for p in prompts)
    if longest >= context:
        raise ValueError(f"the prompt has {longest} tokens; the model's context is {context}")
    max_new_tokens = min(max_new_tokens, context - longest)
    batch = len(prompts)
    pad = torch.tensor([longest - len(p) for p in prompts], device=device)
    tokens = torch.zeros((batch, longest), dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        tokens[row, longest - len(prompt):] = torch.tensor(prompt, device=device)
    padded = bool(pad.any())

    generator = None
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    dtype = next(model.parameters()).dtype
    with autocast():
        cache = KVCache.empty(model.config, batch, longest + max_new_tokens, device,
                              torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else dtype)
        if padded:
            keys = torch.arange(longest, device=device)
            real = keys[None, :] >= pad[:, None]  # (batch, keys)
            causal = keys[None, :] <= keys[:, None]  # (queries, keys)
            mask = (causal[None] & real[:, None, :])[:, None]
            positions = (keys[None, :] - pad[:, None]).clamp(min=0)
            logits = model(tokens, cache=cache, start_pos=0, positions=positions, mask=mask)
        else:
            logits = model(tokens, cache=cache, start_pos=0)
        stops = set(stop_ids) | ({eos_id} if eos_id is not None else set())
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        outputs: list[list[int]] = [[] for _ in range(rows)]
        for step in range(max_new_tokens):
            last = logits[:, -1]
            if guided:
                conditional, plain = last[:rows].float().log_softmax(-1), last[rows:].float().log_softmax(-1)
                last = plain + guidance_scale * (conditional - plain)
            next_ids = sample_next(last, temperature, top_k, top_p, generator)
            if guided:
                next_ids = torch.cat([next_ids, next_ids])
            ids = next_ids.tolist()
            for row, token in enumerate(ids[:rows]):
                if finished[row]:
                    continue
                if token in stops:
                    finished[row] = True
                    continue
                outputs[row].append(token)
                if on_token is not None:
                    on_token(row, token)
            if bool(finished[:rows].all()) or step == max_new_tokens - 1:
                break
            position = longest + step
            if padded:
                mask = (torch.arange(position + 1, device=device)[None, :] >= pad[:, None])[:, None, None, :]
                logits = model(next_ids[:, None], cache=cache, start_pos=position,
                               positions=(position - pad)[:, None], mask=mask)
            else:
                logits = model(next_ids[:, None], cache=cache, start_pos=position)
    model.train(was_training)
    return outputs


class TextStream:
    """Prints decoded text as tokens arrive, holding back bytes of an unfinished UTF-8 character."""

    def __init__(self, decode: Callable[[list[int]], str], write: Callable[[str], None]):
        self.decode, self.write = decode, write
        self.ids: list[int] = []
        self.printed = 0

    def __call__(self, row: int, token: int) -> None:
        self.ids.append(token)
        text = self.decode(self.ids)
        if text.endswith("\ufffd"):
            return
        self.write(text[self.printed:])
        self.printed = len(text)
