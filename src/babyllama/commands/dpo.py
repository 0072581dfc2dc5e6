"""babyllama dpo: preference tuning (DPO) with TRL's DPOTrainer, full or --lora.

Every TrainingArguments / DPOConfig field is a flag (parsed by TRL's own TrlParser) and a YAML key (--config).
"""

HELP = "tune a model on chosen/rejected pairs (TRL DPOTrainer; full or --lora); any DPOConfig field works"


def add_arguments(parser):
    from babyllama.tune.args import add_help_flag

    add_help_flag(parser, "dpo")


def run(args) -> int:
    from babyllama.tune.args import parse_tune_args

    tune, config = parse_tune_args("dpo", args._argv)
    from babyllama.tune.dpo import run_dpo

    folder = run_dpo(tune, config)
    print(f"preference-tuned model: {folder / 'model'}")
    return 0
