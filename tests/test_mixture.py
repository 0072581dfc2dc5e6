"""Mixtures of prepared folders: parsing, one tokenizer, weights met, and batches a pure function of (seed, sample)."""

import json
import shutil

import numpy as np
import pytest

from babyllama.data.batches import WindowSampler
from babyllama.data.mixture import (BLOCK, Component, MixtureSampler, block_counts, is_mixture, open_mixture,
                                    parse_mixture)
from babyllama.data.prepare import PrepareConfig, prepare
from babyllama.errors import BabyLlamaError


def test_parse_mixture_forms(tmp_path):
    assert parse_mixture("data/a:0.7 data/b:0.3") == [Component("data/a", 0.7), Component("data/b", 0.3)]
    yaml_file = tmp_path / "mix.yaml"
    yaml_file.write_text("- {path: data/a, weight: 2}\n- path: data/b\n  weight: 1\n")
    assert parse_mixture(str(yaml_file)) == [Component("data/a", 2.0), Component("data/b", 1.0)]
    assert parse_mixture(["x:1", {"path": "y", "weight": 3}]) == [Component("x", 1.0), Component("y", 3.0)]
    assert is_mixture("a:0.7 b:0.3") and is_mixture(str(yaml_file)) and is_mixture("a:1")
    assert not is_mixture("data/ts-512") and not is_mixture(str(tmp_path))


@pytest.mark.parametrize("spec, message", [
    ("a b:1", "'a' needs a weight"), ("a:0 b:1", "must be positive"), ("a:1 a:2", "appears twice"),
    ([{"path": "a", "weight": "x"}], "weight must be a number"), ([{"folder": "a"}], "write each entry as"),
])
def test_bad_mixtures_are_clear(spec, message):
    with pytest.raises(BabyLlamaError, match=message):
        parse_mixture(spec)


def test_block_counts_meet_the_weights():
    counts = block_counts([0.7, 0.2, 0.1])
    assert counts.sum() == BLOCK and abs(counts[0] / BLOCK - 0.7) < 1 / BLOCK
    with pytest.raises(BabyLlamaError, match="below 1/"):
        block_counts([1.0, 1e-6])


def _arrays():
    a = np.arange(0, 20_000, dtype=np.uint16)          # component 0's tokens are < 20000
    b = np.arange(30_000, 40_000, dtype=np.uint16)     # component 1's are >= 30000
    return a, b


def test_batches_are_a_pure_function_of_seed_and_sample():
    a, b = _arrays()
    sampler = MixtureSampler([a, b], [0.75, 0.25], seq_len=16, seed=3)
    whole = sampler.rows(0, 3 * BLOCK)
    pieces = np.concatenate([sampler.rows(s, min(1000, 3 * BLOCK - s)) for s in range(0, 3 * BLOCK, 1000)])
    assert np.array_equal(whole, pieces)  # drawn in any batch size and order (resume), the same windows
    again = MixtureSampler([a, b], [0.75, 0.25], seq_len=16, seed=3)
    assert np.array_equal(again.rows(5000, 777), whole[5000:5777])
    other = MixtureSampler([a, b], [0.75, 0.25], seq_len=16, seed=4)
    assert not np.array_equal(other.rows(0, 500), whole[:500])
    from_b = (whole[:, 0] >= 30_000).mean()
    assert abs(from_b - 0.25) < 1e-3
    # each component walks its own epochs exactly like a WindowSampler on it alone
    owners, local = sampler.assignment(0, 3 * BLOCK)
    own = sampler.components[1]
    assert np.array_equal(whole[owners == 1], own.rows(0, int((owners == 1).sum())))
    assert isinstance(own, WindowSampler) and sampler.component_epochs(3 * BLOCK)[1] > 1


def test_mixture_needs_one_tokenizer(prepared_512, tinystories, tmp_path):
    shared = prepare(PrepareConfig(data=str(tinystories / "valid.txt"), tokenizer=str(prepared_512),
                                   out=str(tmp_path / "shared"), num_proc=1, disable_tqdm=True), log=lambda _: None)
    folders = open_mixture(parse_mixture(f"{prepared_512}:0.5 {shared}:0.5"))
    assert folders[0].tokenizer.hash == folders[1].tokenizer.hash
    manifest = json.loads((shared / "manifest.json").read_text())
    assert manifest["tokenizer"]["trained"] is False

    other = tmp_path / "other"
    shutil.copytree(shared, other)
    spec = json.loads((other / "tokenizer" / "tokenizer.json").read_text())
    spec["model"]["merges"] = spec["model"]["merges"][:-1]
    (other / "tokenizer" / "tokenizer.json").write_text(json.dumps(spec))
    from babyllama.data.tokenizer import load_tokenizer

    new_hash = load_tokenizer(other / "tokenizer").hash
    manifest["tokenizer"]["hash"] = new_hash
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BabyLlamaError, match="prepared with another tokenizer .* --tokenizer"):
        open_mixture(parse_mixture(f"{prepared_512}:0.5 {other}:0.5"))
