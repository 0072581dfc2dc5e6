"""babyllama sft: supervised fine-tuning (full or LoRA) with TRL's SFTTrainer.

Every TrainingArguments / SFTConfig field is a flag (parsed by TRL's own TrlParser) and a YAML key (--config).
"""

HELP = "fine-tune a model on instructions or chats (TRL SFTTrainer; full or --lora); any SFTConfig field works"


def add_arguments(parser):
    from babyllama.tune.args import add_help_flag

    add_help_flag(parser, "sft")


def run(args) -> int:
    from babyllama.tune.args import parse_tune_args

    tune, config = parse_tune_args("sft", args._argv)
    from babyllama.tune.sft import run_sft

    folder = run_sft(tune, config)
    print(f"fine-tuned model: {folder / 'model'}")
    return 0
