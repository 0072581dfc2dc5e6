"""What a pretraining run reads: one prepared folder, or a weighted mixture of folders sharing one tokenizer.

Both answer the loop's questions the same way: the tokenizer, a fingerprint of what is trained on, the
validation tokens (a mixture validates on its first folder), the training sampler, and a description for the
run's manifest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Union

import numpy as np

from babyllama.data.batches import WindowSampler
from babyllama.data.mixture import MixtureSampler, is_mixture, open_mixture, parse_mixture
from babyllama.data.shards import PretokenizedData


class TrainingData:
    def __init__(self, spec: Any):
        self.spec = spec
        if is_mixture(spec):
            self.components = parse_mixture(spec)
            self.folders = open_mixture(self.components)
        else:
            self.components = None
            self.folders = [PretokenizedData(spec)]
        first = self.folders[0]
        self.folder: Path = first.folder  # the tokenizer and the validation split come from here
        self.tokenizer = first.tokenizer
        self.manifest = first.manifest

    @property
    def is_mixture(self) -> bool:
        return self.components is not None

    @property
    def fingerprint(self) -> str:
        if not self.is_mixture:
            return self.folders[0].fingerprint
        parts = [[f.fingerprint, c.weight] for f, c in zip(self.folders, self.components)]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def tokens(self, split: str) -> np.ndarray:
        return self.folders[0].tokens(split)

    def train_tokens(self) -> int:
        return sum(len(f.tokens("train")) for f in self.folders)

    def sampler(self, seq_len: int, seed: int) -> Union[WindowSampler, MixtureSampler]:
        if not self.is_mixture:
            return WindowSampler(self.folders[0].tokens("train"), seq_len, seed)
        return MixtureSampler([f.tokens("train") for f in self.folders], [c.weight for c in self.components],
                              seq_len, seed)

    def describe(self, seq_len: int, seed: int) -> dict:
        """The manifest's `data` entry."""
        entry = {"folder": str(self.spec), "fingerprint": self.fingerprint, "origin": self.manifest["origin"],
                 "train_tokens": self.train_tokens(), "valid_tokens": len(self.tokens("valid"))}
        if self.is_mixture:
            shares = self.sampler(seq_len, seed).describe(self.components)
            entry["mixture"] = [{**share, "fingerprint": f.fingerprint, "origin": f.manifest["origin"],
                                 "train_tokens": len(f.tokens("train"))} for share, f in zip(shares, self.folders)]
        return entry
