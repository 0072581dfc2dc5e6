"""The optimizer step alone, side by side in one process: babyllama's Muon (+ AdamW for the rest) against the
per-matrix fp32 loop it replaced, torch.optim.Muon as shipped (bf16 Newton-Schulz) and fused AdamW.

Each runner holds its own copy of a preset's parameters with the same fixed gradients; the timed steps are
interleaved in rounds, so a busy machine slows them alike. Prints ms per step and the ratio to the first runner.

    python bench/optim_step.py --preset 260k --vocab_size 2048
    python bench/optim_step.py --preset 15m --vocab_size 4096 --steps 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import torch

from babyllama.config import PRESETS, ModelConfig
from babyllama.model import Llama
from babyllama.train.muon import Float32Muon, MuonWithAdamW, orthogonalize
from babyllama.train.optim import build_optimizer

RESULTS = Path(__file__).resolve().parent / "results"


class PerMatrixFloat32Muon(torch.optim.Muon):
    """The baseline: torch.optim.Muon's one-matrix-at-a-time loop with the iteration in fp32 (babyllama until
    2026-11-30)."""

    @torch.no_grad()
    def step(self, closure=None) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                buffer = self.state[param].get("momentum_buffer")
                if buffer is None:
                    buffer = self.state[param]["momentum_buffer"] = torch.zeros_like(param.grad)
                buffer.lerp_(param.grad, 1 - group["momentum"])
                update = param.grad.lerp(buffer, group["momentum"]) if group["nesterov"] else buffer
                update = orthogonalize(update.float(), group["ns_coefficients"], group["ns_steps"], group["eps"])
                param.mul_(1 - group["lr"] * group["weight_decay"])
                param.add_(update, alpha=-group["lr"] * 0.2 * math.sqrt(max(param.shape[:2])))


def optimizer_for(kind: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    settings = dict(learning_rate=1.6e-2, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8, device=torch.device("cpu"))
    if kind == "adamw":
        return build_optimizer(model, **settings)
    optimizer = MuonWithAdamW(model, muon_learning_rate=8e-3, muon_weight_decay=0.1, muon_momentum=0.95, **settings)
    muon_type = {"muon": Float32Muon, "muon-per-matrix": PerMatrixFloat32Muon, "muon-torch": torch.optim.Muon}[kind]
    old = optimizer.muon
    optimizer.muon = muon_type(old.param_groups, lr=8e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                               adjust_lr_fn="match_rms_adamw")
    optimizer.optimizers = (optimizer.adamw, optimizer.muon)
    return optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="260k", choices=tuple(PRESETS))
    parser.add_argument("--vocab_size", type=int, default=2048)
    parser.add_argument("--runners", nargs="+", default=["muon-per-matrix", "muon", "muon-torch", "adamw"])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per runner per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    torch.manual_seed(0)
    config = ModelConfig(**{**PRESETS[args.preset], "vocab_size": args.vocab_size})
    template = Llama(config)
    grads = {name: torch.randn_like(p) * 1e-2 for name, p in template.named_parameters()}
    runners = {}
    for kind in args.runners:
        model = Llama(config)
        model.load_state_dict(template.state_dict())
        for name, param in model.named_parameters():
            param.grad = grads[name].clone()
        runners[kind] = (model, optimizer_for(kind, model))
        runners[kind][1].step()  # warm-up: state allocated
    times: dict[str, list[float]] = {kind: [] for kind in runners}
    for _ in range(args.rounds):
        for kind, (_, optimizer) in runners.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                optimizer.step()
            times[kind].append((time.perf_counter() - start) / args.steps * 1000)
    base = statistics.median(times[args.runners[0]])
    print(f"{args.preset} vocab {args.vocab_size}: optimizer step, {args.rounds} rounds x {args.steps} steps, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    results = {}
    for kind, values in times.items():
        median = statistics.median(values)
        results[kind] = {"ms_per_step": round(median, 3), "rounds_ms": [round(v, 3) for v in values],
                         "ratio_to_first": round(base / median, 3)}
        print(f"  {kind:16s} {median:8.2f} ms/step   {base / median:5.2f}x vs {args.runners[0]}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"optim-step-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"preset": args.preset, "vocab_size": args.vocab_size, "steps": args.steps,
                                "rounds": args.rounds, "torch": torch.__version__,
                                "threads": torch.get_num_threads(), "load_before": os.getloadavg(),
                                "results": results}, indent=1) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
