"""babyllama quickstart: the whole pipeline in one command -- prepare, pretrain for a few minutes, tell stories."""

import os
import sys

from babyllama import checks

HELP = "prepare TinyStories, pretrain the 260k preset for a few minutes and print three stories"


def add_arguments(parser):
    parser.add_argument("--data", default=os.environ.get("BABYLLAMA_DATA", "tinystories"),
                        help="corpus: 'tinystories' downloads it from the Hub; offline, a local folder such as "
                             "../shared/data/tinystories (default: $BABYLLAMA_DATA, else tinystories)")
    parser.add_argument("--vocab_size", type=int, default=None, help="tokenizer size (default: prepare's default)")
    parser.add_argument("--preset", default="260k", help="model preset")
    parser.add_argument("--max_time", type=checks.flag_type(checks.positive, "max_time", float), default=300,
                        help="seconds of pretraining")
    parser.add_argument("--output_dir", default="runs", help="folder for the run")
    parser.add_argument("--run_name", default=None, help="run name (default: a timestamp)")


def run(args) -> int:
    from babyllama.data.prepare import PrepareConfig, prepare
    from babyllama.infer.generate import generate
    from babyllama.modelio import load_model
    from babyllama.train.loop import pretrain

    prepare_cfg = PrepareConfig(data=args.data)
    if args.vocab_size:
        prepare_cfg.vocab_size = args.vocab_size
    from babyllama.commands.prepare import check_paths

    check_paths(prepare_cfg)
    data = prepare(prepare_cfg)
    train = {"data": str(data), "preset": args.preset, "max_time": args.max_time, "output_dir": args.output_dir}
    if args.run_name:
        train["run_name"] = args.run_name
    run_dir = pretrain(train, {})
    model, tokenizer, _ = load_model(run_dir)
    print(f"\nThree stories from {run_dir}:\n")
    prompts = [[tokenizer.bos_id] + tokenizer.encode("Once upon a time")] * 3
    for i, ids in enumerate(generate(model, prompts, 200, temperature=0.8, top_p=0.95, seed=0,
                                     eos_id=tokenizer.eos_id)):
        print(f"--- story {i + 1} ---\nOnce upon a time{tokenizer.decode(ids)}\n")
    sys.stdout.flush()
    return 0
