"""Generation speed, batch 1: babyllama's KV-cache sampler vs transformers' generate on the same weights.

Both decode greedily from the same prompt for the same number of new tokens (no early stop), so they must
produce the same ids; the script checks that and reports new tokens per second and the ratio.

    python bench/generate.py --preset 15m --vocab_size 4096 --new_tokens 200
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from babyllama.config import PRESETS, ModelConfig  # noqa: E402
from babyllama.infer.generate import generate  # noqa: E402
from babyllama.model import Llama  # noqa: E402
from throughput import build_hf, machine_info, versions  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="15m", choices=tuple(PRESETS))
    parser.add_argument("--vocab_size", type=int, default=4096)
    parser.add_argument("--prompt_tokens", type=int, default=16)
    parser.add_argument("--new_tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="timed generations per side (median reported)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    cfg = ModelConfig(**{**PRESETS[args.preset], "vocab_size": args.vocab_size})
    torch.manual_seed(0)
    ours = Llama(cfg).eval()
    hf = build_hf(cfg, ours.state_dict(), device).eval()
    prompt = torch.randint(3, args.vocab_size, (1, args.prompt_tokens), generator=torch.Generator().manual_seed(1))
    load_before = os.getloadavg()

    def run_ours():
        return generate(ours, [prompt[0].tolist()], args.new_tokens, temperature=0.0)[0]

    def run_hf():
        with torch.inference_mode():
            out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.new_tokens,
                              min_new_tokens=args.new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0)
        return out[0, args.prompt_tokens:].tolist()

    timings: dict[str, list[float]] = {"babyllama": [], "transformers": []}
    outputs = {}
    for name, fn in (("babyllama", run_ours), ("transformers", run_hf)):
        outputs[name] = fn()  # warm-up
    for _ in range(args.repeats):  # interleaved, so a noisy neighbour slows both alike
        for name, fn in (("babyllama", run_ours), ("transformers", run_hf)):
            start = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - start)
    same = outputs["babyllama"] == outputs["transformers"]
    rates = {name: args.new_tokens / statistics.median(t) for name, t in timings.items()}
    ratio = rates["babyllama"] / rates["transformers"]
    record = {"benchmark": "generate", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": machine_info(device), "versions": versions(),
              "settings": {**vars(args), "batch": 1, "decoding": "greedy", "model": cfg.__dict__},
              "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "taken_under_load": load_before[0] > 0.5, "note": args.note,
              "new_tokens_per_second": rates, "seconds": timings, "ratio_babyllama_vs_transformers": ratio,
              "same_tokens": same}
    for name, rate in rates.items():
        print(f"{name:<13} {rate:8.1f} new tokens/s")
    print(f"ratio {ratio:.2f}x; identical greedy outputs: {same}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"generate-{args.preset}-v{args.vocab_size}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"saved {path}")
    return record


if __name__ == "__main__":
    main()
