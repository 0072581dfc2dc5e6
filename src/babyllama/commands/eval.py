"""babyllama eval: task evaluations of a model (and, side by side, its base)."""

from babyllama.commands.sampling import add_sampling_arguments, positive_int_flag

HELP = "evaluate a model on a task: words (does a story use the requested words?)"

TASKS = ("words",)


def add_arguments(parser):
    parser.add_argument("--task", required=True, choices=TASKS, help="which evaluation")
    parser.add_argument("--model", required=True, help="the model: a run folder or a model folder")
    parser.add_argument("--base", default=None, help="a second model (e.g. the pretrained base) to compare with")
    parser.add_argument("--prompts", required=True,
                        help="words prompts (.jsonl with 'instruction' and 'words', from `babyllama prepare-sft`)")
    parser.add_argument("--num_prompts", type=positive_int_flag("num_prompts"), default=100,
                        help="evaluate the first N prompts")
    parser.add_argument("--batch_size", type=positive_int_flag("batch_size"), default=16,
                        help="stories generated together")
    add_sampling_arguments(parser, temperature=0.0, max_new_tokens=256, seed=0, top_k_top_p=False)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--out", default=None, help="also write the results (with sample stories) to this JSON file")


def run(args) -> int:
    import json
    from pathlib import Path

    from babyllama.pathchecks import check_model_path, check_writable_file
    from babyllama.evals.words import evaluate_words, read_prompts, table
    from babyllama.train.device import resolve_device

    if args.out:  # before the generation, not after it
        check_writable_file("--out", args.out, inputs={"--prompts": args.prompts, "--model": args.model,
                                                       "--base": args.base})
    for flag, path in (("--model", args.model), ("--base", args.base)):
        if path:
            check_model_path(path, flag)
    prompts = read_prompts(args.prompts, args.num_prompts)
    models = {}
    if args.base:
        models["base"] = args.base
    models["model"] = args.model
    results = evaluate_words(models, prompts, args.max_new_tokens, args.temperature, args.seed, args.batch_size,
                             resolve_device(args.device))
    print(table(results))
    if args.out:
        from babyllama.pathchecks import write_text_atomic

        write_text_atomic(Path(args.out), json.dumps(results, indent=2, ensure_ascii=False))
        print(f"wrote {args.out}")
    return 0
