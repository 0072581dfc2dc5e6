"""Muon for the hidden weight matrices, AdamW for everything else, behind one optimizer interface.

Muon (momentum, then the update orthogonalised by a Newton-Schulz iteration) is made for 2-D weights that map
one hidden space to another: the attention and MLP projections inside the blocks. Embeddings, the output head
(tied to the embeddings here) and the norm gains are not such maps, and stay on AdamW, the split used by the
fastest public GPT training runs. The two optimizers have their own learning rates and weight decays.

The loop sees one object: `param_groups` (each with an `lr_scale`, so one schedule drives both learning rates),
`step`, `zero_grad`, `state` and one `state_dict` that checkpoints and resumes both halves exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from babyllama.errors import BabyLlamaError
from babyllama.train.device import default_precision_dtype


def is_hidden_matrix(name: str, param: torch.Tensor) -> bool:
    """A 2-D weight inside a transformer block (q/k/v/o, gate/up/down), the parameters Muon is for."""
    return param.dim() == 2 and ".layers." in f".{name}"


def orthogonalize(matrices: torch.Tensor, coefficients: tuple[float, float, float], steps: int,
                  eps: float) -> torch.Tensor:
    """The quintic Newton-Schulz iteration Muon applies to an update (as torch.optim.Muon does, in the matrices' own
    dtype): it pushes every singular value towards 1, keeping the singular vectors. `matrices` is one matrix or a
    stack of same-shaped ones (batch, rows, columns), orthogonalised each on its own."""
    a, b, c = coefficients
    tall = matrices.size(-2) > matrices.size(-1)
    x = matrices.mT if tall else matrices  # X X^T on the smaller side
    x = x / torch.linalg.matrix_norm(x, keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a) if x.dim() == 3 else \
            torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


class Float32Muon(torch.optim.Muon):
    """torch.optim.Muon (its parameter groups, state and checkpoints) with the Newton-Schulz iteration in fp32.

    torch runs the iteration in bf16, which CPUs without AVX512-BF16 or AMX only emulate: one 768 x 288 update took
    0.94 s in bf16 and 0.33 s in fp32 on this project's 2-core AMD CPU (a `15m` MLP matrix; the model has 18).
    torch also steps one matrix at a time; here same-shaped matrices (q and o, k and v, every layer's MLP) go
    through the iteration as one batch and the momentum as one foreach call, so a small model's step is a few dozen
    operations rather than hundreds (`260k`: 35 matrices, 4 shapes)."""

    @torch.no_grad()
    def step(self, closure=None) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            momentum, lr = group["momentum"], group["lr"]
            grads = [p.grad for p in params]
            for param in params:
                if "momentum_buffer" not in self.state[param]:
                    self.state[param]["momentum_buffer"] = torch.zeros_like(param.grad)
            buffers = [self.state[p]["momentum_buffer"] for p in params]
            torch._foreach_lerp_(buffers, grads, 1 - momentum)
            updates = [g.lerp(m, momentum) for g, m in zip(grads, buffers)] if group["nesterov"] else buffers
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
            by_shape: dict[torch.Size, list[int]] = {}
            for index, param in enumerate(params):
                by_shape.setdefault(param.shape, []).append(index)
            for shape, indices in by_shape.items():
                stacked = torch.stack([updates[i].float() for i in indices])
                orthogonal = orthogonalize(stacked, group["ns_coefficients"], group["ns_steps"], group["eps"])
                # "match_rms_adamw": the update's RMS matched to AdamW's (0.2 * sqrt(larger dimension)).
                scale = 0.2 * math.sqrt(max(shape[:2]))
                torch._foreach_add_([params[i] for i in indices],
                                    list(orthogonal.to(params[indices[0]].dtype).unbind(0)), alpha=-lr * scale)


def muon_class(device: torch.device) -> type:
    """torch's own Muon where bf16 matrix products are native (CUDA, CPUs with AVX512-BF16/AMX), else fp32."""
    return torch.optim.Muon if default_precision_dtype(device) is torch.bfloat16 else Float32Muon


class MuonWithAdamW:
    """torch.optim.Muon over the hidden matrices + torch.optim.AdamW over the rest, stepped together."""

    def __init__(self, model: torch.nn.Module, *, learning_rate: float, weight_decay: float,
                 betas: tuple[float, float], eps: float, muon_learning_rate: float, muon_weight_decay: float,
                 muon_momentum: float, device: torch.device):
        if not hasattr(torch.optim, "Muon"):
            raise BabyLlamaError(f"--optim muon needs torch.optim.Muon (PyTorch 2.9 or newer); this is "
                                 f"torch {torch.__version__}. Upgrade PyTorch or use --optim adamw")
        hidden, decay, no_decay = [], [], []
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            if is_hidden_matrix(name, param):
                hidden.append(param)
            else:
                (decay if param.dim() >= 2 else no_decay).append(param)
        if not hidden:
            raise BabyLlamaError("--optim muon found no hidden weight matrices to optimise; use --optim adamw")
        self.adamw = torch.optim.AdamW(
            [{"params": decay, "weight_decay": weight_decay, "lr_scale": 1.0},
             {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0}],
            lr=learning_rate, betas=betas, eps=eps, fused=device.type in ("cuda", "cpu"))
        # "match_rms_adamw" scales each matrix's orthogonal update to AdamW's typical size (0.2 * sqrt(max dim)),
        # so Muon's learning rate lives on AdamW's scale and one schedule serves both.
        self.muon = muon_class(device)(
            [{"params": hidden, "lr_scale": muon_learning_rate / learning_rate}],
            lr=muon_learning_rate, weight_decay=muon_weight_decay, momentum=muon_momentum, nesterov=True,
            adjust_lr_fn="match_rms_adamw")
        self.defaults: dict[str, Any] = {}  # not the fused AdamW: non-finite steps are decided on the host
        self.optimizers = (self.adamw, self.muon)

    @property
    def param_groups(self) -> list[dict]:
        return self.adamw.param_groups + self.muon.param_groups

    @property
    def state(self) -> dict:
        return {**self.adamw.state, **self.muon.state}

    def step(self, closure=None) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"adamw": self.adamw.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != {"adamw", "muon"}:
            raise BabyLlamaError("the checkpoint's optimizer state is not Muon + AdamW: it was saved by another "
                                 "--optim; resume with the run's own --optim")
        self.adamw.load_state_dict(state["adamw"])
        self.muon.load_state_dict(state["muon"])


def parameter_split(model: torch.nn.Module) -> dict[str, int]:
    """How many parameters each optimizer gets (for the run log)."""
    counts = {"muon": 0, "adamw": 0}
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if id(param) in seen or not param.requires_grad:
            continue
        seen.add(id(param))
        counts["muon" if is_hidden_matrix(name, param) else "adamw"] += param.numel()
    return counts

