"""Fast paths compute the same thing as the plain paths (correctness only; speed lives in bench/)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from babyllama.config import ModelConfig
from babyllama.data.batches import WindowSampler
from babyllama.errors import BabyLlamaError
from babyllama.model import Llama
from babyllama.ops.linear_cross_entropy import (chunked_linear_cross_entropy, default_chunk_rows, linear_cross_entropy,
                                                resolve_loss_impl, standard_linear_cross_entropy)

REPO = Path(__file__).resolve().parents[1]


def _inputs(rows=300, dim=32, vocab=97, seed=0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, dim, generator=gen, requires_grad=True)
    weight = (0.2 * torch.randn(vocab, dim, generator=gen)).requires_grad_()
    targets = torch.randint(0, vocab, (rows,), generator=gen)
    targets[::5] = -100  # some ignored positions, as in padded SFT batches
    return hidden, weight, targets


def _loss_and_grads(fn, hidden, weight, targets):
    hidden.grad = weight.grad = None
    loss = fn(hidden, weight, targets)
    loss.backward()
    return loss.detach(), hidden.grad.clone(), weight.grad.clone()


@pytest.mark.parametrize("chunk_rows", [7, 64, 300, 1000])
def test_chunked_loss_and_gradients_match_standard(chunk_rows):
    hidden, weight, targets = _inputs()
    ref = _loss_and_grads(standard_linear_cross_entropy, hidden, weight, targets)
    got = _loss_and_grads(lambda h, w, t: chunked_linear_cross_entropy(h, w, t, chunk_rows=chunk_rows),
                          hidden, weight, targets)
    for a, b in zip(ref, got):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("impl", ["standard", "chunked"])
def test_z_loss_adds_the_gradient_of_z_log_z_squared_and_keeps_the_cross_entropy_value(impl):
    """--z_loss: gradient of CE + z * mean(logsumexp^2) over the kept rows, by plain autograd; value = CE alone."""
    hidden, weight, targets = _inputs()
    z = 0.05  # large, so a missing or misplaced term cannot hide in the tolerance

    def reference(h, w, t):
        logits = h @ w.t()
        keep = t != -100
        squared = torch.logsumexp(logits, dim=-1).square()[keep].mean()
        return torch.nn.functional.cross_entropy(logits, t, ignore_index=-100) + z * squared

    want = _loss_and_grads(reference, hidden, weight, targets)
    plain = _loss_and_grads(standard_linear_cross_entropy, hidden, weight, targets)
    kwargs = {"chunk_rows": 64} if impl == "chunked" else {}
    fn = chunked_linear_cross_entropy if impl == "chunked" else standard_linear_cross_entropy
    got = _loss_and_grads(lambda h, w, t: fn(h, w, t, z_loss=z, **kwargs), hidden, weight, targets)
    torch.testing.assert_close(got[0], plain[0], rtol=1e-5, atol=1e-6)  # the logged value: cross-entropy
    for a, b in zip(want[1:], got[1:]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(want[2], plain[2], rtol=1e-3)  # the term changes the gradient


def test_chunked_loss_under_bf16_autocast_is_close_and_keeps_fp32_grads():
    hidden, weight, targets = _inputs(rows=256, dim=64, vocab=128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = _loss_and_grads(standard_linear_cross_entropy, hidden, weight, targets)
        got = _loss_and_grads(lambda h, w, t: chunked_linear_cross_entropy(h, w, t, chunk_rows=100),
                              hidden, weight, targets)
    assert got[0].dtype == torch.float32 and got[2].dtype == torch.float32
    torch.testing.assert_close(got[0], ref[0], rtol=2e-3, atol=2e-3)
    for a, b in zip(ref[1:], got[1:]):
        torch.testing.assert_close(b, a, rtol=3e-2, atol=3e-3)


def test_all_targets_ignored_gives_zero_loss_and_zero_grads():
    hidden, weight, targets = _inputs(rows=10)
    targets[:] = -100
    loss, grad_h, grad_w = _loss_and_grads(lambda h, w, t: chunked_linear_cross_entropy(h, w, t, chunk_rows=4),
                                           hidden, weight, targets)
    assert loss.item() == 0.0 and grad_h.abs().sum() == 0 and grad_w.abs().sum() == 0


def test_chunked_loss_without_grad_and_mismatched_targets():
    hidden, weight, targets = _inputs()
    with torch.no_grad():
        got = chunked_linear_cross_entropy(hidden, weight, targets, chunk_rows=50)
        ref = standard_linear_cross_entropy(hidden, weight, targets)
    torch.testing.assert_close(got, ref)
    with pytest.raises(BabyLlamaError, match="targets"):
        chunked_linear_cross_entropy(hidden, weight, targets[:-1])


def test_loss_impl_names_and_fallbacks():
    with pytest.raises(BabyLlamaError, match='did you mean "chunked"'):
        resolve_loss_impl("chunkd", "cpu")
    assert resolve_loss_impl("standard", "cpu") == "standard"
    if not torch.cuda.is_available():
        with pytest.warns(UserWarning, match="Liger"):
            assert resolve_loss_impl("liger", "cpu") == "chunked"
    assert resolve_loss_impl("auto", "cpu") in ("standard", "chunked")
    assert default_chunk_rows(128 * 256, 32000, "cuda") == 2048  # 16 chunks for 15m at batch 128 on a GPU
    assert default_chunk_rows(16 * 256, 4096, "cpu") == 256
    assert default_chunk_rows(10, 512, "cpu") == 10  # small batches: one chunk


def _tiny_model(tie: bool) -> Llama:
    torch.manual_seed(0)
    return Llama(ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=101, max_seq_len=32,
                             tie_embeddings=tie))


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("impl", ["chunked", "liger"])
def test_model_loss_impls_train_identically(tie, impl):
    """forward(targets=) with a fast path gives the standard loss and gradients (tied embeddings included)."""
    x = torch.randint(0, 101, (3, 16), generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -1, dims=1)
    y[0, :4] = -100
    results = {}
    for name in ("standard", impl):
        model = _tiny_model(tie)
        model.loss_impl = name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # liger falls back to chunked without a GPU
            loss = model(x, y)
        loss.backward()
        results[name] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
        # The logits path is untouched by the loss choice.
        results[name + "_logits"] = model(x).detach()
    torch.testing.assert_close(results[impl][0], results["standard"][0], rtol=1e-5, atol=1e-6)
    for n, grad in results["standard"][1].items():
        torch.testing.assert_close(results[impl][1][n], grad, rtol=1e-4, atol=1e-6, msg=n)
    torch.testing.assert_close(results[impl + "_logits"], results["standard_logits"], rtol=0, atol=0)


def test_vectorised_window_sampler_matches_row_by_row_slices():
    tokens = np.random.default_rng(0).integers(0, 500, 5000).astype(np.uint16)
    sampler = WindowSampler(tokens, 32, seed=3)
    per_epoch = sampler.windows_per_epoch
    for first, count in [(0, 7), (per_epoch - 3, 10), (5 * per_epoch + 1, 2 * per_epoch)]:  # spans epochs too
        starts = sampler.starts(first, count)
        expected = []
        for g in range(first, first + count):
            epoch, index = divmod(g, per_epoch)
            shift, order = sampler._epoch_plan(epoch)
            expected.append(shift + order[index] * 32)
        assert starts.tolist() == expected
        inputs, targets = sampler.batch(first, count)
        rows = np.stack([tokens[s:s + 33] for s in expected]).astype(np.int64)
        assert inputs.dtype == torch.int64 and (inputs.numpy() == rows[:, :-1]).all()
        assert (targets.numpy() == rows[:, 1:]).all()


def test_throughput_bench_runs_all_runners_on_cpu(tmp_path):
    """The benchmark's code paths (ours, LlamaForCausalLM loop, Trainer, fast-path variants) on a tiny shape.

    Every runner starts from the same weights on the same batch, so their first losses must agree.
    """
    cmd = [sys.executable, str(REPO / "bench" / "throughput.py"), "--preset", "260k", "--batch", "2", "--seq_len",
           "32", "--warmup", "1", "--steps", "2", "--out", str(tmp_path), "--runners", "ours", "hf", "trainer"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(next(tmp_path.glob("throughput-260k-cpu-fp32-*.json")).read_text())
    results = record["results"]
    assert set(results) == {"ours", "hf", "trainer"}
    assert all("error" not in r and r["tokens_per_second"] > 0 for r in results.values()), results
    first = [results[n]["first_loss"] for n in ("ours", "hf")]
    assert max(first) - min(first) < 1e-4, first
    assert abs(first[0] - np.log(512)) < 0.5  # a fresh model is near uniform over the vocabulary
    assert "vs_hf" in results["ours"]["ratios"] and "vs_trainer" in results["ours"]["ratios"]
    assert record["settings"]["tokens_per_step"] == 64 and record["versions"]["transformers"]


@pytest.mark.parametrize("accumulation,compact", [(1, False), (3, False), (3, True)])
def test_background_batch_loader_gives_the_samplers_batches_in_and_out_of_order(accumulation, compact):
    from babyllama.data.batches import BatchPlan
    from babyllama.train.fastpaths import BatchLoader

    tokens = np.random.default_rng(1).integers(0, 300, 4000).astype(np.uint16)
    sampler = WindowSampler(tokens, 16, seed=0)
    plan = BatchPlan(4, accumulation)
    # compact: int32 windows widened after the copy, as on a GPU.
    loader = BatchLoader(sampler, plan, torch.device("cpu"), background=True, pin=False, compact=compact)
    order = [(s, m) for s in range(4) for m in range(accumulation)]
    order += [(9, 0), (2, accumulation - 1), (3, 0)]  # a jump (resume) and going back
    try:
        for step, micro in order:
            inputs, targets = loader(step, micro)
            expected = sampler.batch(plan.first_sample(step, micro), plan.micro_batch)
            assert torch.equal(inputs, expected[0]) and torch.equal(targets, expected[1])
            assert inputs.dtype == targets.dtype == torch.int64
    finally:
        loader.close()
