"""Data mixtures: several prepared folders with one tokenizer, sampled by weight as batches are drawn.

`--data "a:0.7 b:0.3"` (or a YAML list of {path, weight}) names the folders. MixtureSampler has WindowSampler's
interface, and like it is a pure function of (seed, global sample index), so exact resume stays bit-identical:

    Global samples are cut into blocks of BLOCK samples. Every block holds the same count of each component
    (its weight x BLOCK, rounded by largest remainder, so the weights are met exactly within each block) in an
    order drawn from (seed, block). Within a component, samples keep their order across positions and blocks,
    so a run of global samples maps to one contiguous run of each component's own samples, which that
    component's WindowSampler (seeded from (seed, component)) turns into windows, epoch after epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from babyllama.data.batches import WindowSampler, split_rows
from babyllama.errors import BabyLlamaError

BLOCK = 8192


@dataclass(frozen=True)
class Component:
    path: str
    weight: float


def _component(text: str, where: str) -> Component:
    path, sep, weight = text.rpartition(":")
    try:
        value = float(weight) if sep else None
    except ValueError:
        value = None
    if value is None:
        raise BabyLlamaError(f"{where}: '{text}' needs a weight, as in data/a:0.7")
    return Component(path, value)


def parse_mixture(spec: Any) -> list[Component]:
    """'a:0.7 b:0.3', a YAML file holding a list, or that list itself ([{path, weight}] or ['a:0.7', ...])."""
    where = "--data"
    if isinstance(spec, str) and spec.strip().endswith((".yaml", ".yml")) and Path(spec.strip()).is_file():
        import yaml

        where = spec.strip()
        try:
            spec = yaml.safe_load(Path(where).read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise BabyLlamaError(f"cannot parse the mixture file {where}: {err}") from None
    if isinstance(spec, str):
        items: Sequence[Any] = spec.split()
    elif isinstance(spec, list):
        items = spec
    else:
        raise BabyLlamaError(f"{where}: a mixture is a list of {{path, weight}} entries, not {type(spec).__name__}")
    components = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            components.append(_component(item, where))
        elif isinstance(item, dict) and set(item) <= {"path", "weight"} and "path" in item:
            try:
                components.append(Component(str(item["path"]), float(item.get("weight", 1.0))))
            except (TypeError, ValueError):
                raise BabyLlamaError(f"{where}, entry {i + 1}: weight must be a number, got {item.get('weight')!r}") \
                    from None
        else:
            raise BabyLlamaError(f"{where}, entry {i + 1}: write each entry as {{path: FOLDER, weight: 0.5}}, "
                                 f"got {item!r}")
    if not components:
        raise BabyLlamaError(f"{where}: the mixture is empty")
    for c in components:
        if not c.weight > 0:
            raise BabyLlamaError(f"{where}: the weight of {c.path} must be positive, got {c.weight}")
    paths = [c.path for c in components]
    if len(set(paths)) != len(paths):
        raise BabyLlamaError(f"{where}: a folder appears twice in the mixture; give it one weight")
    return components


def is_mixture(spec: Any) -> bool:
    """Whether --data names a mixture rather than one prepared folder."""
    if isinstance(spec, list):
        return True
    text = str(spec).strip()
    return len(text.split()) > 1 or text.endswith((".yaml", ".yml")) or \
        (":" in text and not Path(text).exists() and text.rpartition(":")[2].replace(".", "", 1).isdigit())


def open_mixture(components: list[Component]):
    """The prepared folders, checked to share one tokenizer."""
    from babyllama.data.shards import PretokenizedData

    folders = [PretokenizedData(c.path) for c in components]
    first = folders[0]
    for component, folder in zip(components[1:], folders[1:]):
        if folder.tokenizer.hash != first.tokenizer.hash:
            raise BabyLlamaError(
                f"{component.path} was prepared with another tokenizer than {components[0].path} (hash "
                f"{folder.tokenizer.hash[:12]} vs {first.tokenizer.hash[:12]}); a mixture needs one tokenizer: "
                f"prepare it again with `babyllama prepare --data ... --tokenizer {components[0].path}/tokenizer`")
    return folders


def block_counts(weights: Sequence[float], block: int = BLOCK) -> np.ndarray:
    """Samples per component in each block: weight x block, rounded by largest remainder (summing to block)."""
    shares = np.asarray(weights, dtype=np.float64) / float(sum(weights)) * block
    counts = np.floor(shares).astype(np.int64)
    order = np.argsort(-(shares - counts), kind="stable")
    counts[order[:block - counts.sum()]] += 1
    if (counts == 0).any():
        raise BabyLlamaError(f"a mixture weight is below 1/{block} of the total; raise it or drop that folder")
    return counts


class MixtureSampler:
    """WindowSampler's interface over several token arrays, mixed by weight."""

    def __init__(self, token_arrays: Sequence[np.ndarray], weights: Sequence[float], seq_len: int, seed: int):
        if len(token_arrays) != len(weights):
            raise ValueError("one weight per token array")
        self.seq_len, self.seed = seq_len, seed
        self.components = [WindowSampler(tokens, seq_len, int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
                           for i, tokens in enumerate(token_arrays)]
        self.counts = block_counts(weights)
        self.weights = self.counts / BLOCK
        self.dtype = np.result_type(*[np.asarray(t[:1]).dtype for t in token_arrays])
        # A nominal epoch: as many samples as all the components' windows together.
        self.windows_per_epoch = sum(c.windows_per_epoch for c in self.components)

    @lru_cache(maxsize=4)
    def _block_plan(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """(component of each position, its rank among that component's positions) for one block."""
        owners = np.repeat(np.arange(len(self.counts)), self.counts)
        owners = np.random.default_rng([self.seed, block, 7]).permutation(owners)
        ranks = np.empty(BLOCK, dtype=np.int64)
        for c in range(len(self.counts)):
            here = owners == c
            ranks[here] = np.arange(int(here.sum()))
        return owners, ranks

    def assignment(self, first_sample: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """For consecutive global samples: each one's component and its index among that component's samples."""
        samples = np.arange(first_sample, first_sample + count, dtype=np.int64)
        blocks, positions = np.divmod(samples, BLOCK)
        owners = np.empty(count, dtype=np.int64)
        local = np.empty(count, dtype=np.int64)
        for block in np.unique(blocks):
            here = blocks == block
            block_owners, block_ranks = self._block_plan(int(block))
            owners[here] = block_owners[positions[here]]
            local[here] = int(block) * self.counts[owners[here]] + block_ranks[positions[here]]
        return owners, local

    def rows(self, first_sample: int, count: int) -> np.ndarray:
        """(count, seq_len + 1) windows of consecutive global samples, in the shards' dtype."""
        owners, local = self.assignment(first_sample, count)
        out = np.empty((count, self.seq_len + 1), dtype=self.dtype)
        for c, sampler in enumerate(self.components):
            here = np.flatnonzero(owners == c)
            if len(here):  # contiguous in the component's own order (see the module docstring)
                out[here] = sampler.rows(int(local[here[0]]), len(here))
        return out

    def batch(self, first_sample: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        return split_rows(torch.from_numpy(self.rows(first_sample, count).astype(np.int64)))

    def epoch_of(self, sample: int) -> float:
        return sample / self.windows_per_epoch

    def component_epochs(self, sample: int) -> list[float]:
        """How many times each component has been seen after `sample` global samples."""
        blocks, rest = divmod(sample, BLOCK)
        if rest:
            owners, _ = self._block_plan(blocks)
            partial = np.bincount(owners[:rest], minlength=len(self.counts))
        else:
            partial = np.zeros(len(self.counts), dtype=np.int64)
        seen = blocks * self.counts + partial
        return [float(s) / c.windows_per_epoch for s, c in zip(seen, self.components)]

    def describe(self, components: Sequence[Component]) -> list[dict]:
        """For the run's manifest: each folder, its weight as given and as realised per block."""
        return [{"path": c.path, "weight": c.weight, "share": float(s)} for c, s in zip(components, self.weights)]
