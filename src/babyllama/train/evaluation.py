"""Evaluation during pretraining: validation loss, bits per byte and perplexity, plus a few sampled stories."""

from __future__ import annotations

from typing import Any

from babyllama.evals.loss import evaluate
from babyllama.infer.generate import generate

SAMPLE_PROMPTS = ("Once upon a time", "")


class Evaluator:
    def __init__(self, *, model, valid_tokens, tokenizer, cfg, device, precision, record):
        self.model, self.valid_tokens, self.tokenizer, self.cfg = model, valid_tokens, tokenizer, cfg
        self.device, self.precision, self.record = device, precision, record
        self.byte_lengths = tokenizer.token_byte_lengths()

    def __call__(self, step: int) -> dict[str, Any]:
        cfg = self.cfg
        metrics = evaluate(self.model, self.valid_tokens, cfg.seq_len,
                           cfg.per_device_eval_batch_size or cfg.per_device_train_batch_size, self.byte_lengths,
                           self.device, self.precision.autocast, cfg.eval_max_tokens)
        if cfg.num_samples:
            prompts = [SAMPLE_PROMPTS[i % len(SAMPLE_PROMPTS)] for i in range(cfg.num_samples)]
            ids = [[self.tokenizer.bos_id] + self.tokenizer.encode(p) for p in prompts]
            out = generate(self.model, ids, cfg.sample_max_new_tokens, temperature=0.8, top_p=0.95, seed=step,
                           eos_id=self.tokenizer.eos_id, autocast=self.precision.autocast)
            self.record.add_samples(step, [(p, p + self.tokenizer.decode(o)) for p, o in zip(prompts, out)])
        return metrics


def eval_line(step: int, metrics: dict[str, Any]) -> str:
    return (f"step {step:>6} | eval loss {metrics['eval_loss']:.4f} | bits/byte {metrics['eval_bpb']:.4f} | "
            f"perplexity {metrics['eval_perplexity']:.2f}")
