"""babyllama sft: supervised fine-tuning (full or LoRA) with TRL's SFTTrainer.

Every TrainingArguments / SFTConfig field is a flag (generated from TRL's dataclass; see tune/args.py) and a
YAML key (--config).
"""

HELP = "fine-tune a model on instructions or chats (TRL SFTTrainer; full or --lora); any SFTConfig field works"

# Importing TRL takes seconds: the flags are built only when this command runs (see cli.build_parser).
HEAVY_ARGUMENTS = True


def add_arguments(parser):
    from babyllama.tune.args import add_tune_arguments

    add_tune_arguments(parser, "sft")


def run(args) -> int:
    from babyllama.tune.args import tune_args_from_namespace

    tune, config = tune_args_from_namespace("sft", args)
    from babyllama.pathchecks import check_model_path

    check_model_path(tune.model)
    from babyllama.tune.sft import run_sft

    folder = run_sft(tune, config)
    print(f"fine-tuned model: {folder / 'model'}")
    return 0
