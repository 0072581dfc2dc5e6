"""babyllama prepare-dpo: preference pairs for `babyllama dpo`, made from a model's own samples."""

from babyllama.commands.sampling import add_sampling_arguments, positive_int_flag

HELP = ("make DPO preference pairs from a model's own stories scored by the words metric (chosen: uses the "
        "requested words; rejected: misses some)")


def add_arguments(parser):
    parser.add_argument("--from_words", required=True,
                        help="words prompts (.jsonl with 'instruction' and 'words', from `babyllama prepare-sft`)")
    parser.add_argument("--model", required=True, help="the model that writes the stories (usually the SFT run)")
    parser.add_argument("--out", required=True, help="output .jsonl of instruction/chosen/rejected pairs")
    parser.add_argument("--num_prompts", type=positive_int_flag("num_prompts"), default=None,
                        help="use the first N prompts")
    parser.add_argument("--samples_per_prompt", type=positive_int_flag("samples_per_prompt"), default=4,
                        help="stories sampled per prompt (at least 2 to have a pair)")
    add_sampling_arguments(parser, temperature=0.8, max_new_tokens=256, seed=0, top_k_top_p=False)
    parser.add_argument("--min_chosen_share", type=float, default=1.0,
                        help="a chosen story uses at least this share of the requested words")
    parser.add_argument("--reference_chosen", action="store_true",
                        help="when no sample qualifies, take the prompt's source story ('output') as chosen")
    parser.add_argument("--batch_size", type=positive_int_flag("batch_size"), default=16,
                        help="stories generated together")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")


def run(args) -> int:
    import json
    from pathlib import Path

    from babyllama.errors import BabyLlamaError
    from babyllama.evals.words import read_prompts
    from babyllama.train.device import resolve_device
    from babyllama.tune.word_pairs import word_pairs

    from babyllama.pathchecks import check_model_path, check_writable_file, write_text_atomic

    check_writable_file("--out", args.out, {"--from_words": args.from_words, "--model": args.model})
    check_model_path(args.model)
    prompts = read_prompts(args.from_words, args.num_prompts)
    pairs, stats = word_pairs(args.model, prompts, args.samples_per_prompt, args.temperature, args.max_new_tokens,
                              args.seed, args.batch_size, resolve_device(args.device), args.min_chosen_share,
                              args.reference_chosen)
    if not pairs:
        raise BabyLlamaError(f"no pair from {stats['prompts']} prompts: every prompt's samples scored the same; "
                             f"sample more (--samples_per_prompt), lower --min_chosen_share or add --reference_chosen")
    out = Path(args.out)
    write_text_atomic(out, "".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs))
    print(f"wrote {len(pairs)} pairs from {stats['prompts']} prompts to {out} (samples used "
          f"{stats['sample_word_share']:.1%} of the requested words; {stats['chosen_from_reference']} chosen "
          f"from the source story)")
    return 0
