"""babyllama grpo: reinforcement learning (GRPO) with the words metric as a verifiable reward, full or --lora.

Every TrainingArguments / GRPOConfig field is a flag (parsed by TRL's own TrlParser) and a YAML key (--config).
"""

HELP = ("tune a model by reinforcement learning on words prompts, rewarded by the share of requested words its "
        "stories use (TRL GRPOTrainer; full or --lora); any GRPOConfig field works")


def add_arguments(parser):
    from babyllama.tune.args import add_help_flag

    add_help_flag(parser, "grpo")


def run(args) -> int:
    from babyllama.tune.args import parse_tune_args

    tune, config = parse_tune_args("grpo", args._argv)
    from babyllama.tune.grpo import run_grpo

    folder = run_grpo(tune, config)
    print(f"reinforced model: {folder / 'model'}")
    return 0
