"""Validation loss, perplexity and bits per byte over a whole split.

Bits per byte divides the total information (nats / ln 2) over every predicted token by the UTF-8 bytes
those tokens stand for, so models with different tokenizers compare fairly.
"""

from __future__ import annotations

import contextlib
import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from babyllama.data.batches import validation_windows


@torch.no_grad()
def evaluate(model, tokens: np.ndarray, seq_len: int, batch_size: int, token_byte_lengths: np.ndarray,
             device, autocast=contextlib.nullcontext, max_tokens: Optional[int] = None) -> dict[str, float]:
    was_training = model.training
    model.eval()
    if max_tokens is not None and max_tokens < len(tokens):
        tokens = tokens[: max_tokens + 1]
    byte_lengths = torch.from_numpy(token_byte_lengths).to(device)
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    total_tokens = torch.zeros((), dtype=torch.long, device=device)
    total_bytes = torch.zeros((), dtype=torch.long, device=device)
    for inputs, targets in validation_windows(tokens, seq_len, batch_size):
        inputs, targets = inputs.to(device), targets.to(device)
        with autocast():
            logits = model(inputs)
        nats = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=-100, reduction="sum")
        valid = targets != -100
        total_nats += nats.double()
        total_tokens += valid.sum()
        total_bytes += byte_lengths[targets.clamp(min=0)][valid].sum()
    model.train(was_training)
    loss = (total_nats / total_tokens).item()
    return {
        "eval_loss": loss,
        "eval_perplexity": math.exp(min(loss, 50.0)),
        "eval_bpb": (total_nats / math.log(2) / total_bytes).item(),
        "eval_tokens": int(total_tokens.item()),
    }
