"""babyllama dpo: preference tuning (DPO) with TRL's DPOTrainer, full or --lora.

Every TrainingArguments / DPOConfig field is a flag (generated from TRL's dataclass; see tune/args.py) and a
YAML key (--config).
"""

HELP = "tune a model on chosen/rejected pairs (TRL DPOTrainer; full or --lora); any DPOConfig field works"

# Importing TRL takes seconds: the flags are built only when this command runs (see cli.build_parser).
HEAVY_ARGUMENTS = True


def add_arguments(parser):
    from babyllama.tune.args import add_tune_arguments

    add_tune_arguments(parser, "dpo")


def run(args) -> int:
    from babyllama.tune.args import tune_args_from_namespace

    tune, config = tune_args_from_namespace("dpo", args)
    from babyllama.pathchecks import check_model_path

    check_model_path(tune.model)
    from babyllama.tune.dpo import run_dpo

    folder = run_dpo(tune, config)
    print(f"preference-tuned model: {folder / 'model'}")
    return 0
