"""babyllama quickstart: the whole pipeline in one command -- prepare, pretrain for a few minutes, tell stories.

A five-minute run needs a slice of TinyStories, not all 1.9 GB: from the Hub, quickstart streams the first
--max_bytes of it (40 MB by default: more than the 260k preset trains on in five minutes on a laptop's CPU), trains
its tokenizer on 20 MB of that, and starts training. The full corpus is `babyllama prepare --data tinystories`.
"""

import os
import sys
import time

from babyllama import checks

HELP = "prepare a slice of TinyStories, pretrain the 260k preset for a few minutes and print three stories"
HUB_SLICE_BYTES = 40_000_000
TOKENIZER_SAMPLE_BYTES = 20_000_000


def add_arguments(parser):
    parser.add_argument("--data", default=os.environ.get("BABYLLAMA_DATA", "tinystories"),
                        help="corpus: 'tinystories' streams it from the Hub; offline, a local folder such as "
                             "../shared/data/tinystories (default: $BABYLLAMA_DATA, else tinystories)")
    parser.add_argument("--max_bytes", type=int, default=None,
                        help=f"text to prepare: default {HUB_SLICE_BYTES // 1_000_000} MB from the Hub, all of a "
                             f"local corpus; 0 means all")
    parser.add_argument("--vocab_size", type=int, default=None, help="tokenizer size (default: prepare's default)")
    parser.add_argument("--preset", default="260k", help="model preset")
    parser.add_argument("--max_time", type=checks.flag_type(checks.positive, "max_time", float), default=300,
                        help="seconds of pretraining")
    parser.add_argument("--logging_steps", type=int, default=None, help="log every N steps (default: pretrain's)")
    parser.add_argument("--output_dir", default="runs", help="folder for the run")
    parser.add_argument("--run_name", default=None, help="run name (default: a timestamp)")


def run(args) -> int:
    from babyllama.commands.prepare import check_paths
    from babyllama.data.hub import hub_source
    from babyllama.data.prepare import PrepareConfig, prepare
    from babyllama.errors import BabyLlamaError
    from babyllama.infer.generate import generate
    from babyllama.modelio import load_model
    from babyllama.train.loop import pretrain

    started = time.time()
    if args.max_bytes is not None and args.max_bytes < 0:
        raise BabyLlamaError(f"--max_bytes must be 0 (all) or positive, got {args.max_bytes}")
    prepare_cfg = PrepareConfig(data=args.data)
    if args.vocab_size:
        prepare_cfg.vocab_size = args.vocab_size
    from_hub = hub_source(args.data, subset=None, split="train", valid_split=None, text_field="text", revision=None,
                          cache_dir=None) is not None
    slice_bytes = args.max_bytes if args.max_bytes is not None else (HUB_SLICE_BYTES if from_hub else 0)
    if slice_bytes:
        prepare_cfg.max_bytes = slice_bytes
        prepare_cfg.tokenizer_max_bytes = min(TOKENIZER_SAMPLE_BYTES, slice_bytes)
        print(f"quickstart prepares the first {slice_bytes / 1e6:g} MB of {args.data}, enough for a "
              f"{args.max_time:g}-second run (the whole corpus: babyllama prepare --data {args.data}, "
              f"or quickstart --max_bytes 0)")
    check_paths(prepare_cfg)  # the output folder, before any work
    data = prepare(prepare_cfg)
    print(f"data ready after {time.time() - started:.1f}s: training starts now")
    train = {"data": str(data), "preset": args.preset, "max_time": args.max_time, "output_dir": args.output_dir}
    if args.run_name:
        train["run_name"] = args.run_name
    if args.logging_steps:
        train["logging_steps"] = args.logging_steps
    run_dir = pretrain(train, {})
    model, tokenizer, _ = load_model(run_dir)
    print(f"\nThree stories from {run_dir}:\n")
    prompts = [[tokenizer.bos_id] + tokenizer.encode("Once upon a time")] * 3
    for i, ids in enumerate(generate(model, prompts, 200, temperature=0.8, top_p=0.95, seed=0,
                                     eos_id=tokenizer.eos_id)):
        print(f"--- story {i + 1} ---\nOnce upon a time{tokenizer.decode(ids)}\n")
    sys.stdout.flush()
    return 0
