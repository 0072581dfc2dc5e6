"""Do the fused losses compute the standard loss? Max abs difference of the loss and of every gradient, per loss_impl.

Two levels, both against `standard` (full logits, PyTorch's cross-entropy) in the same precision, and against an fp32
standard reference:
  op:    hidden (rows x dim) @ weight (vocab x dim)^T and cross-entropy, gradients of hidden and weight;
  model: a whole Llama (preset, vocab) forward + backward, gradients of every parameter; with --compile the body is
         compiled and the Triton kernels run eagerly after it (what training does).
Also the time and peak memory of one op forward + backward. Writes a JSON record to --out.

    python bench/loss_check.py --device cuda --precision bf16 fp32 --compile
    python bench/loss_check.py --device cpu --rows 256 --vocab 512 --model_preset 260k --model_batch 2 --seq_len 32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from babyllama.config import PRESETS, ModelConfig  # noqa: E402
from babyllama.model import Llama  # noqa: E402
from babyllama.ops.linear_cross_entropy import linear_cross_entropy, resolve_loss_impl  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def autocast(device: torch.device, name: str):
    dtype = DTYPES[name]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def op_run(impl, hidden, weight, targets, device, precision):
    for _ in range(2):  # the first call compiles/autotunes the Triton kernels; time the second
        h = hidden.detach().clone().requires_grad_(True)
        w = weight.detach().clone().requires_grad_(True)
        loss, seconds, peak = _timed_op(impl, h, w, targets, device, precision)
    return loss, {"hidden": h.grad.float(), "weight": w.grad.float()}, seconds, peak


def _timed_op(impl, h, w, targets, device, precision):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    with autocast(device, precision):
        loss = linear_cross_entropy(h, w, targets, impl=impl)
    loss.backward()
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return loss.detach().float(), seconds, peak


def model_run(impl, cfg, state, x, y, device, precision, compile_body):
    model = Llama(cfg).to(device)
    model.load_state_dict(state)
    model.loss_impl = impl
    forward = torch.compile(model) if compile_body else model
    with autocast(device, precision):
        loss = forward(x, y)
    loss.backward()
    sync(device)
    return loss.detach().float(), {n: p.grad.float() for n, p in model.named_parameters()}


def diffs(loss, grads, ref_loss, ref_grads) -> dict:
    return {"loss": abs(loss.item() - ref_loss.item()),
            "grad": max((grads[n] - ref_grads[n]).abs().max().item() for n in grads),
            "grad_relative": max(((grads[n] - ref_grads[n]).norm() / ref_grads[n].norm().clamp(min=1e-30)).item()
                                 for n in grads)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", nargs="+", default=["bf16", "fp32"], choices=tuple(DTYPES))
    parser.add_argument("--impls", nargs="+", default=["chunked", "liger", "cce", "fused"])
    parser.add_argument("--rows", type=int, default=128 * 256, help="op level: tokens (15m at batch 128 x 256)")
    parser.add_argument("--dim", type=int, default=288)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--model_preset", default="15m", choices=tuple(PRESETS))
    parser.add_argument("--model_batch", type=int, default=16)
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--compile", action="store_true", help="model level: torch.compile the model")
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(args.rows, args.dim, generator=gen).to(device)
    weight = (torch.randn(args.vocab, args.dim, generator=gen) * 0.02).to(device)
    targets = torch.randint(0, args.vocab, (args.rows,), generator=gen)
    targets[: args.rows // 16] = -100  # some ignored positions, as in packed/SFT data
    targets = targets.to(device)

    values = dict(PRESETS[args.model_preset], vocab_size=args.vocab)
    values["max_seq_len"] = max(values["max_seq_len"], args.seq_len)
    cfg = ModelConfig(**values)
    torch.manual_seed(0)
    state = {k: v.to(device) for k, v in Llama(cfg).state_dict().items()}
    rows = torch.randint(0, args.vocab, (args.model_batch, args.seq_len + 1), generator=gen).to(device)
    x, y = rows[:, :-1].contiguous(), rows[:, 1:].contiguous()

    record = {"benchmark": "loss_check", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
              "torch": torch.__version__, "settings": vars(args), "op": {}, "model": {}}
    op_fp32 = op_run("standard", hidden, weight, targets, device, "fp32")
    model_fp32 = model_run("standard", cfg, state, x, y, device, "fp32", False)
    for precision in args.precision:
        op_ref = op_run("standard", hidden, weight, targets, device, precision)
        model_ref = model_run("standard", cfg, state, x, y, device, precision, args.compile)
        record["op"][f"standard/{precision}"] = {"seconds": op_ref[2], "peak_memory_bytes": op_ref[3],
                                                 "vs_fp32": diffs(op_ref[0], op_ref[1], *op_fp32[:2])}
        for impl in args.impls:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                resolved = resolve_loss_impl(impl, device.type)
                try:
                    loss, grads, seconds, peak = op_run(impl, hidden, weight, targets, device, precision)
                    m_loss, m_grads = model_run(impl, cfg, state, x, y, device, precision, args.compile)
                except Exception as err:  # one kernel failing must not lose the others
                    record["op"][f"{impl}/{precision}"] = {"resolved": resolved, "error": f"{type(err).__name__}: {err}"}
                    print(f"{impl:>8} {precision}: FAILED {type(err).__name__}: {str(err)[:200]}", flush=True)
                    continue
            record["op"][f"{impl}/{precision}"] = {
                "resolved": resolved, "seconds": seconds, "peak_memory_bytes": peak,
                "vs_standard": diffs(loss, grads, *op_ref[:2]), "vs_fp32": diffs(loss, grads, *op_fp32[:2])}
            record["model"][f"{impl}/{precision}"] = {
                "resolved": resolved, "compiled": args.compile, "vs_standard": diffs(m_loss, m_grads, *model_ref),
                "vs_fp32": diffs(m_loss, m_grads, *model_fp32)}
            op, model = record["op"][f"{impl}/{precision}"], record["model"][f"{impl}/{precision}"]
            print(f"{impl:>8} ({resolved}) {precision}: op loss diff {op['vs_standard']['loss']:.2e}, grad diff "
                  f"{op['vs_standard']['grad']:.2e} ({seconds * 1e3:.1f} ms vs standard {op_ref[2] * 1e3:.1f} ms); "
                  f"model loss diff {model['vs_standard']['loss']:.2e}, grad diff {model['vs_standard']['grad']:.2e}",
                  flush=True)
    out = Path(args.out) / f"loss-check-{device.type}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out}")
    return record


if __name__ == "__main__":
    main()
