"""babyllama prepare-dpo: preference pairs for `babyllama dpo`, made from a model's own samples."""

HELP = ("make DPO preference pairs from a model's own stories scored by the words metric (chosen: uses the "
        "requested words; rejected: misses some)")


def add_arguments(parser):
    parser.add_argument("--from_words", required=True,
                        help="words prompts (.jsonl with 'instruction' and 'words', from `babyllama prepare-sft`)")
    parser.add_argument("--model", required=True, help="the model that writes the stories (usually the SFT run)")
    parser.add_argument("--out", required=True, help="output .jsonl of instruction/chosen/rejected pairs")
    parser.add_argument("--num_prompts", type=int, default=None, help="use the first N prompts")
    parser.add_argument("--samples_per_prompt", type=int, default=4, help="stories sampled per prompt")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (> 0)")
    parser.add_argument("--max_new_tokens", type=int, default=256, help="story length at most (tokens)")
    parser.add_argument("--min_chosen_share", type=float, default=1.0,
                        help="a chosen story uses at least this share of the requested words")
    parser.add_argument("--reference_chosen", action="store_true",
                        help="when no sample qualifies, take the prompt's source story ('output') as chosen")
    parser.add_argument("--batch_size", type=int, default=16, help="stories generated together")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")


def run(args) -> int:
    import json
    from pathlib import Path

    from babyllama.errors import BabyLlamaError
    from babyllama.evals.words import read_prompts
    from babyllama.train.device import resolve_device
    from babyllama.tune.word_pairs import word_pairs

    if args.max_new_tokens <= 0 or args.batch_size <= 0 or (args.num_prompts is not None and args.num_prompts <= 0):
        raise BabyLlamaError("--max_new_tokens, --batch_size and --num_prompts must be positive")
    prompts = read_prompts(args.from_words, args.num_prompts)
    pairs, stats = word_pairs(args.model, prompts, args.samples_per_prompt, args.temperature, args.max_new_tokens,
                              args.seed, args.batch_size, resolve_device(args.device), args.min_chosen_share,
                              args.reference_chosen)
    if not pairs:
        raise BabyLlamaError(f"no pair from {stats['prompts']} prompts: every prompt's samples scored the same; "
                             f"sample more (--samples_per_prompt), lower --min_chosen_share or add --reference_chosen")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as handle:
        for pair in pairs:
            handle.write(json.dumps(pair, ensure_ascii=False) + "\n")
    print(f"wrote {len(pairs)} pairs from {stats['prompts']} prompts to {out} (samples used "
          f"{stats['sample_word_share']:.1%} of the requested words; {stats['chosen_from_reference']} chosen "
          f"from the source story)")
    return 0
