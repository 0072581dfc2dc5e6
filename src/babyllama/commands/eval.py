"""babyllama eval: task evaluations of a model (and, side by side, its base)."""

HELP = "evaluate a model on a task: words (does a story use the requested words?)"

TASKS = ("words",)


def add_arguments(parser):
    parser.add_argument("--task", required=True, choices=TASKS, help="which evaluation")
    parser.add_argument("--model", required=True, help="the model: a run folder or a model folder")
    parser.add_argument("--base", default=None, help="a second model (e.g. the pretrained base) to compare with")
    parser.add_argument("--prompts", required=True,
                        help="words prompts (.jsonl with 'instruction' and 'words', from `babyllama prepare-sft`)")
    parser.add_argument("--num_prompts", type=int, default=100, help="evaluate the first N prompts")
    parser.add_argument("--max_new_tokens", type=int, default=256, help="story length at most (tokens)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="seed when sampling")
    parser.add_argument("--batch_size", type=int, default=16, help="stories generated together")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--out", default=None, help="also write the results (with sample stories) to this JSON file")


def run(args) -> int:
    import json
    from pathlib import Path

    from babyllama.errors import BabyLlamaError
    from babyllama.evals.words import evaluate_words, read_prompts, table
    from babyllama.train.device import resolve_device

    if args.num_prompts <= 0 or args.max_new_tokens <= 0 or args.batch_size <= 0 or args.temperature < 0:
        raise BabyLlamaError("--num_prompts, --max_new_tokens, --batch_size must be positive, --temperature >= 0")
    prompts = read_prompts(args.prompts, args.num_prompts)
    models = {}
    if args.base:
        models["base"] = args.base
    models["model"] = args.model
    results = evaluate_words(models, prompts, args.max_new_tokens, args.temperature, args.seed, args.batch_size,
                             resolve_device(args.device))
    print(table(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False))
        print(f"wrote {args.out}")
    return 0
