"""babyllama pretrain: train a Llama 2 from scratch (or continue one) on prepared shards."""

import argparse
import os
import sys

from babyllama.commands.common import add_config_flag, explicit_values
from babyllama.config import ModelConfig, TrainConfig, add_dataclass_args

HELP = "pretrain a Llama 2 model on data made by `babyllama prepare` (resumable)"


def add_arguments(parser):
    add_config_flag(parser)
    add_dataclass_args(parser, TrainConfig, "training (Hugging Face TrainingArguments names where they exist)")
    add_dataclass_args(parser, ModelConfig, "model shape (overrides the preset)")
    parser.add_argument("--nproc_per_node", type=int, metavar="N", default=argparse.SUPPRESS,
                        help="train on N processes of this machine: re-runs this command under torchrun "
                             "(python -m torch.distributed.run --standalone); see docs/distributed.md")


def run(args) -> int:
    from babyllama.train.distributed import Distributed
    from babyllama.train.launch import torchrun_argv
    from babyllama.train.loop import pretrain

    if getattr(args, "nproc_per_node", None) is not None:
        options = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("command",
                                                                                             "nproc_per_node", "debug")}
        argv = torchrun_argv(args.nproc_per_node, "pretrain", options) + (["--debug"] if args.debug else [])
        sys.stdout.flush()
        os.execv(argv[0], argv)  # torchrun starts the processes; babyllama manages none itself
    train_values, model_values = explicit_values(args, TrainConfig, ModelConfig)
    try:
        pretrain(train_values, model_values)
    finally:
        Distributed.teardown()  # leave torchrun's process group cleanly (no-op for one process)
    return 0
