"""Muon for the hidden weight matrices, AdamW for everything else, behind one optimizer interface.

Muon (momentum, then the update orthogonalised by a Newton-Schulz iteration) is made for 2-D weights that map
one hidden space to another: the attention and MLP projections inside the blocks. Embeddings, the output head
(tied to the embeddings here) and the norm gains are not such maps, and stay on AdamW, the split used by the
fastest public GPT training runs. The two optimizers have their own learning rates and weight decays.

The loop sees one object: `param_groups` (each with an `lr_scale`, so one schedule drives both learning rates),
`step`, `zero_grad`, `state` and one `state_dict` that checkpoints and resumes both halves exactly.
"""

from __future__ import annotations

from typing import Any

import torch

from babyllama.errors import BabyLlamaError


def is_hidden_matrix(name: str, param: torch.Tensor) -> bool:
    """A 2-D weight inside a transformer block (q/k/v/o, gate/up/down), the parameters Muon is for."""
    return param.dim() == 2 and ".layers." in f".{name}"


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
        self.muon = torch.optim.Muon(
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

