"""--optim muon: the parameter split, the two learning rates, skipped non-finite steps and exact resume."""

from __future__ import annotations

import pytest
import torch

from babyllama.config import ModelConfig
from babyllama.model import Llama
from babyllama.train.muon import (Float32Muon, MuonWithAdamW, is_hidden_matrix, muon_class, orthogonalize,
                                  parameter_split)
from conftest import TINY_MODEL, pretrain_tiny, resume_matches_whole


def _model() -> Llama:
    torch.manual_seed(0)
    return Llama(ModelConfig(**TINY_MODEL, vocab_size=300))


def _optimizer(model, **overrides) -> MuonWithAdamW:
    settings = dict(learning_rate=1e-3, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8, muon_learning_rate=2e-2,
                    muon_weight_decay=0.0, muon_momentum=0.95, device=torch.device("cpu"))
    return MuonWithAdamW(model, **{**settings, **overrides})


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = _model()
    optimizer = _optimizer(model)
    muon_params = {id(p) for g in optimizer.muon.param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        expected = name.endswith("_proj.weight")  # q k v o gate up down
        assert (id(param) in muon_params) == expected, name
        assert is_hidden_matrix(name, param) == expected
    split = parameter_split(model)
    assert split["muon"] + split["adamw"] == model.num_params() and split["muon"] > 0 and split["adamw"] > 0


def test_each_optimizer_follows_the_schedule_at_its_own_peak():
    optimizer = _optimizer(_model())
    scales = [g["lr_scale"] for g in optimizer.param_groups]
    assert scales[:2] == [1.0, 1.0] and scales[2] == pytest.approx(20.0)
    for group in optimizer.param_groups:  # what train/step.py does with the scheduled learning rate
        group["lr"] = 5e-4 * group["lr_scale"]
    assert optimizer.muon.param_groups[0]["lr"] == pytest.approx(1e-2)
    assert optimizer.adamw.param_groups[0]["lr"] == pytest.approx(5e-4)


def test_the_fp32_muon_takes_torchs_steps():
    """Float32Muon (CPUs that only emulate bf16) is torch.optim.Muon with the Newton-Schulz iteration in fp32: the
    same state and the same steps up to bf16's rounding, and it loads torch's state (and back)."""
    torch.manual_seed(0)
    weights = [torch.randn(48, 24), torch.randn(24, 24), torch.randn(24, 48)]
    grads = [[torch.randn_like(w) for w in weights] for _ in range(3)]
    ours, torchs = [[torch.nn.Parameter(w.clone()) for w in weights] for _ in range(2)]
    settings = dict(lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True, adjust_lr_fn="match_rms_adamw")
    optimizers = Float32Muon(ours, **settings), torch.optim.Muon(torchs, **settings)
    for step_grads in grads:
        for params, optimizer in zip((ours, torchs), optimizers):
            for param, grad in zip(params, step_grads):
                param.grad = grad.clone()
            optimizer.step()
    for a, b, start in zip(ours, torchs, weights):
        moved = (b - start).norm()
        assert moved > 0.05 and (a - b).norm() < 0.02 * moved  # bf16 has 8 bits of mantissa
    again = torch.optim.Muon([torch.nn.Parameter(w.clone()) for w in weights], **settings)
    again.load_state_dict(optimizers[0].state_dict())
    assert torch.equal(again.state_dict()["state"][0]["momentum_buffer"],
                       optimizers[0].state_dict()["state"][0]["momentum_buffer"])
    assert muon_class(torch.device("meta")) is Float32Muon


def test_a_step_moves_every_parameter_and_the_state_round_trips():
    model = _model()
    optimizer = _optimizer(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tokens = torch.randint(0, 300, (2, 17))
    model(tokens[:, :-1], tokens[:, 1:]).backward()
    optimizer.step()
    optimizer.zero_grad()
    moved = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert sorted(moved) == sorted(before)
    state = optimizer.state_dict()
    assert set(state) == {"adamw", "muon"} and state["muon"]["state"]  # momentum buffers are saved
    fresh = _optimizer(model)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.muon.state_dict()["state"][0]["momentum_buffer"], state["muon"]["state"][0]["momentum_buffer"])
    with pytest.raises(Exception, match="another --optim"):
        fresh.load_state_dict(torch.optim.AdamW(model.parameters()).state_dict())


def test_pretrain_with_muon_learns_and_resumes_bit_identically(prepared_512, tmp_path):
    settings = dict(optim="muon", muon_learning_rate=2e-2, save_steps=5, save_total_limit=None)
    whole = pretrain_tiny(prepared_512, tmp_path, "whole", max_steps=12, **settings)
    rows = [line for line in (whole / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    first, last = (float(r.split('"loss": ')[1].split(",")[0]) for r in (rows[0], rows[-1]))
    assert last < first
    assert resume_matches_whole(whole, 5, tmp_path)


def test_a_stack_of_matrices_is_orthogonalised_each_on_its_own():
    """Float32Muon runs same-shaped matrices through Newton-Schulz as one batch: each result must be the one the
    matrix gets alone (wide and tall shapes)."""
    torch.manual_seed(0)
    settings = ((3.4445, -4.7750, 2.0315), 5, 1e-7)
    for shape in ((3, 24, 48), (4, 48, 24)):
        stack = torch.randn(shape)
        batched = orthogonalize(stack, *settings)
        for matrix, result in zip(stack, batched):
            assert torch.allclose(result, orthogonalize(matrix, *settings), atol=1e-5)
        singular = torch.linalg.svdvals(batched)
        assert singular.min() > 0.5 and singular.max() < 1.3  # pushed towards 1
