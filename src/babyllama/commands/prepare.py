"""babyllama prepare: corpus -> tokenizer -> pretokenized shards."""

from babyllama.commands.common import add_config_flag, explicit_values
from babyllama.config import add_dataclass_args
from babyllama.data.prepare import PrepareConfig, prepare

HELP = "get a corpus, train a tokenizer on it and pretokenize it into shards"


def add_arguments(parser):
    add_config_flag(parser)
    add_dataclass_args(parser, PrepareConfig, "data preparation")


def run(args) -> int:
    (values,) = explicit_values(args, PrepareConfig)
    prepare(PrepareConfig(**values))
    return 0
