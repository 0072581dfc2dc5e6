"""babyllama grpo: reinforcement learning (GRPO) with the words metric as a verifiable reward, full or --lora.

Every TrainingArguments / GRPOConfig field is a flag (generated from TRL's dataclass; see tune/args.py) and a
YAML key (--config).
"""

HELP = ("tune a model by reinforcement learning on words prompts, rewarded by the share of requested words its "
        "stories use (TRL GRPOTrainer; full or --lora); any GRPOConfig field works")

# Importing TRL takes seconds: the flags are built only when this command runs (see cli.build_parser).
HEAVY_ARGUMENTS = True


def add_arguments(parser):
    from babyllama.tune.args import add_tune_arguments

    add_tune_arguments(parser, "grpo")


def run(args) -> int:
    from babyllama.pathchecks import check_model_path
    from babyllama.tune.args import tune_args_from_namespace
    from babyllama.tune.grpo import run_grpo

    tune, config = tune_args_from_namespace("grpo", args)
    check_model_path(tune.model)
    folder = run_grpo(tune, config)
    print(f"reinforced model: {folder / 'model'}")
    return 0
