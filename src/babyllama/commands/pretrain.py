"""babyllama pretrain: train a Llama 2 from scratch (or continue one) on prepared shards."""

from babyllama.commands.common import add_config_flag, explicit_values
from babyllama.config import ModelConfig, TrainConfig, add_dataclass_args

HELP = "pretrain a Llama 2 model on data made by `babyllama prepare` (resumable)"


def add_arguments(parser):
    add_config_flag(parser)
    add_dataclass_args(parser, TrainConfig, "training (Hugging Face TrainingArguments names where they exist)")
    add_dataclass_args(parser, ModelConfig, "model shape (overrides the preset)")


def run(args) -> int:
    from babyllama.train.loop import pretrain

    train_values, model_values = explicit_values(args, TrainConfig, ModelConfig)
    pretrain(train_values, model_values)
    return 0
