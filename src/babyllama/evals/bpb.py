"""Bits per byte and perplexity of any model on any text file, document by document.

Each document is scored on its own: its tokens (no special tokens) are predicted from a BOS token in front, in
disjoint windows of `seq_len` predictions where each window after the first sees the previous token as context.
This is exactly how lm-evaluation-harness scores a `loglikelihood_rolling` task (`get_rolling_token_windows`
with context 1), so `eval --task bpb` and `eval --task lm_eval` on the same file and context agree.
Bits per byte divides the nats (/ ln 2) by the UTF-8 bytes of the documents' text, so models with different
tokenizers compare fairly; perplexity is per token of the model's own tokenizer.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F

from babyllama.errors import BabyLlamaError


def read_text_documents(path: str | Path, max_documents: Optional[int] = None) -> list[str]:
    from babyllama.data.sources import read_documents

    path = Path(path)
    if not path.is_file():
        raise BabyLlamaError(f"--text {path}: no such file (a .txt separated by <|endoftext|>, .jsonl or .parquet)")
    docs = []
    for doc in read_documents(path):
        if doc:
            docs.append(doc)
            if max_documents and len(docs) >= max_documents:
                break
    if not docs:
        raise BabyLlamaError(f"--text {path}: no documents")
    return docs


def rolling_windows(tokens: list[int], prefix: int, seq_len: int) -> Iterable[tuple[list[int], list[int]]]:
    """(inputs, targets) covering every token once: inputs are the targets shifted right by one."""
    full = [prefix] + tokens
    for start in range(0, len(tokens), seq_len):
        width = min(seq_len, len(tokens) - start)
        yield full[start:start + width], full[start + 1:start + 1 + width]


@torch.no_grad()
def text_bpb(model, tokenizer, documents: list[str], seq_len: int, batch_size: int = 16, device="cpu",
             log: Callable[[str], None] = lambda _: None) -> dict:
    """{'bpb', 'perplexity', 'loss', 'tokens', 'bytes', 'documents', 'seq_len'} of a Hugging Face causal LM."""
    if seq_len <= 0 or batch_size <= 0:
        raise BabyLlamaError("--seq_len and --batch_size must be positive")
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    windows, total_bytes = [], 0
    for doc in documents:
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
        windows += list(rolling_windows(list(ids), prefix, seq_len))
        total_bytes += len(doc.encode("utf-8"))
    # Similar lengths together: less padding.
    windows.sort(key=lambda w: len(w[0]), reverse=True)
    was_training = model.training
    model.eval()
    nats, count = 0.0, 0
    for start in range(0, len(windows), batch_size):
        chunk = windows[start:start + batch_size]
        width = len(chunk[0][0])
        inputs = torch.full((len(chunk), width), pad, dtype=torch.long)
        targets = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (inp, tgt) in enumerate(chunk):
            inputs[row, :len(inp)] = torch.tensor(inp)
            targets[row, :len(tgt)] = torch.tensor(tgt)
            mask[row, :len(inp)] = 1
        logits = model(input_ids=inputs.to(device), attention_mask=mask.to(device)).logits.float()
        nats += F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.to(device).reshape(-1),
                                ignore_index=-100, reduction="sum").item()
        count += int((targets != -100).sum())
        if (start // batch_size) % 50 == 0:
            log(f"  {min(start + batch_size, len(windows))}/{len(windows)} windows")
    model.train(was_training)
    loss = nats / max(1, count)
    return {"bpb": nats / math.log(2) / max(1, total_bytes), "perplexity": math.exp(min(loss, 50.0)), "loss": loss,
            "tokens": count, "bytes": total_bytes, "documents": len(documents), "seq_len": seq_len}


def load_for_eval(model_path: str, device="cpu"):
    """(model, tokenizer, context) for a run folder, checkpoint, adapter or Hugging Face folder."""
    from babyllama.tune.hfmodel import load_hf_model, load_tokenizer, resolve

    folder, adapter = resolve(model_path)
    model, _ = load_hf_model(model_path)
    tokenizer = load_tokenizer(adapter or folder)
    return model.to(device), tokenizer, int(getattr(model.config, "max_position_embeddings", 2048))
