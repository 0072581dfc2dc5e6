"""Chat with a model: conversations rendered by the tokenizer's chat template, answers generated with the
KV-cache generator until the end-of-turn token <|end|> (or EOS)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Optional

from babyllama.errors import BabyLlamaError


class ChatSession:
    """A model, its HF tokenizer (for the template), and the conversation so far."""

    def __init__(self, model_path: str | Path, device: str = "cpu", system: Optional[str] = None):
        from babyllama.modelio import load_model
        from babyllama.tune.hfmodel import load_tokenizer

        self.model, self.tokenizer, folder = load_model(model_path, device)
        self.hf_tokenizer = load_tokenizer(folder)
        self.end_id = self.hf_tokenizer.convert_tokens_to_ids("<|end|>")
        self.history: list[dict] = [{"role": "system", "content": system}] if system else []

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        ids = self.hf_tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                    return_dict=True)["input_ids"]
        return list(ids)

    def reply(self, message: str, max_new_tokens: int = 200, temperature: float = 0.0, top_k: Optional[int] = None,
              top_p: Optional[float] = None, seed: Optional[int] = None,
              on_text: Optional[Callable[[str], None]] = None, autocast=contextlib.nullcontext,
              guidance_scale: float = 1.0, negative_prompt: str = "") -> str:
        from babyllama.infer.generate import TextStream, generate

        messages = self.history + [{"role": "user", "content": message}]
        ids = self.prompt_ids(messages)
        context = self.model.config.max_seq_len
        while len(ids) >= context and len(messages) > 1:  # forget the oldest turns that no longer fit
            messages = messages[1:]
            ids = self.prompt_ids(messages)
        if len(ids) >= context:
            raise BabyLlamaError(f"the message is {len(ids)} tokens; the model's context is {context}")
        # Guidance's twin: the same conversation with this turn's message replaced by the negative prompt.
        twin = self.prompt_ids(messages[:-1] + [{"role": "user", "content": negative_prompt}])
        stream = TextStream(self.hf_tokenizer.decode, on_text) if on_text else None
        out = generate(self.model, [ids], max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                       seed=seed, eos_id=self.hf_tokenizer.eos_token_id, stop_ids=(self.end_id,),
                       on_token=(lambda row, token: stream(row, token)) if stream else None, autocast=autocast,
                       guidance_scale=guidance_scale, unconditional=[twin])[0]
        answer = self.hf_tokenizer.decode(out, skip_special_tokens=True)
        self.history = messages + [{"role": "assistant", "content": answer}]
        return answer
