"""babyllama eval: model quality in one place.

  bpb      bits per byte and perplexity of a model on a text file (document by document, lm_eval's rolling way)
  words    does a story use the requested words? (the model and, side by side, its base)
  lm_eval  EleutherAI's lm-evaluation-harness on the model: its tasks, your YAML tasks, or `babyllama_text`
"""

from babyllama.commands.sampling import add_sampling_arguments, positive_int_flag

HELP = ("evaluate a model: bpb (bits/byte and perplexity on a text file), words (does a story use the requested "
        "words?), lm_eval (lm-evaluation-harness tasks)")

TASKS = ("bpb", "words", "lm_eval")


def add_arguments(parser):
    parser.add_argument("--task", required=True, choices=TASKS, help="which evaluation")
    parser.add_argument("--model", required=True,
                        help="the model: a run folder, a checkpoint, a LoRA adapter or a Hugging Face folder")
    parser.add_argument("--base", default=None, help="words: a second model (e.g. the pretrained base) to compare")
    parser.add_argument("--prompts", default=None,
                        help="words: prompts (.jsonl with 'instruction' and 'words', from `babyllama prepare-sft`)")
    parser.add_argument("--num_prompts", type=positive_int_flag("num_prompts"), default=100,
                        help="words: evaluate the first N prompts")
    add_sampling_arguments(parser, temperature=0.0, max_new_tokens=256, seed=0, top_k_top_p=False)
    parser.add_argument("--text", default=None,
                        help="bpb (and lm_eval's babyllama_text task): a .txt (separated by <|endoftext|>), "
                             ".jsonl ('text') or .parquet file")
    parser.add_argument("--max_documents", type=positive_int_flag("max_documents"), default=None,
                        help="bpb/lm_eval: score the first N documents")
    parser.add_argument("--seq_len", type=positive_int_flag("seq_len"), default=None,
                        help="bpb/lm_eval: context length of the rolling windows (default: the model's context)")
    parser.add_argument("--tasks", default=None,
                        help="lm_eval: comma-separated task names (lm_eval's, --include_path's, or babyllama_text)")
    parser.add_argument("--include_path", default=None, help="lm_eval: a folder of lm_eval task YAML files")
    parser.add_argument("--limit", type=float, default=None,
                        help="lm_eval: documents per task (a count, or a fraction below 1)")
    parser.add_argument("--num_fewshot", type=int, default=None, help="lm_eval: few-shot examples per question")
    parser.add_argument("--batch_size", type=positive_int_flag("batch_size"), default=16,
                        help="sequences evaluated together")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--out", default=None, help="also write the results to this JSON file")


def run(args) -> int:
    import json
    from pathlib import Path

    from babyllama.pathchecks import check_model_path, check_writable_file, write_text_atomic
    from babyllama.train.device import resolve_device

    if args.out:  # before the work, not after it
        check_writable_file("--out", args.out, inputs={"--prompts": args.prompts, "--model": args.model,
                                                       "--base": args.base, "--text": args.text})
    for flag, path in (("--model", args.model), ("--base", args.base)):
        if path:
            check_model_path(path, flag)
    device = resolve_device(args.device)
    if args.task == "words":
        results = run_words(args, device)
    elif args.task == "bpb":
        results = run_bpb(args, device)
    else:
        results = run_lm_eval(args, device)
    if args.out:
        write_text_atomic(Path(args.out), json.dumps(results, indent=2, ensure_ascii=False))
        print(f"wrote {args.out}")
    return 0


def run_words(args, device) -> dict:
    from babyllama.errors import BabyLlamaError
    from babyllama.evals.words import evaluate_words, read_prompts, table

    if not args.prompts:
        raise BabyLlamaError("--task words needs --prompts FILE (make one with `babyllama prepare-sft --heldout N`)")
    prompts = read_prompts(args.prompts, args.num_prompts)
    models = {}
    if args.base:
        models["base"] = args.base
    models["model"] = args.model
    results = evaluate_words(models, prompts, args.max_new_tokens, args.temperature, args.seed, args.batch_size,
                             device, guidance_scale=args.guidance_scale, negative_prompt=args.negative_prompt)
    print(table(results))
    return results


def _context(args, context: int) -> int:
    from babyllama.errors import BabyLlamaError

    if args.seq_len and args.seq_len > context:
        raise BabyLlamaError(f"--seq_len {args.seq_len} is beyond the model's context ({context})")
    return args.seq_len or context


def run_bpb(args, device) -> dict:
    from babyllama.errors import BabyLlamaError
    from babyllama.evals.bpb import load_for_eval, read_text_documents, text_bpb

    if not args.text:
        raise BabyLlamaError("--task bpb needs --text FILE (e.g. ../shared/data/tinystories/valid.txt)")
    documents = read_text_documents(args.text, args.max_documents)
    model, tokenizer, context = load_for_eval(args.model, device)
    result = text_bpb(model, tokenizer, documents, _context(args, context), args.batch_size, device)
    result.update(model=str(args.model), text=str(args.text))
    print(f"{args.model} on {args.text} ({result['documents']} documents, {result['bytes']:,} bytes, "
          f"{result['tokens']:,} tokens, context {result['seq_len']}): {result['bpb']:.4f} bits/byte, "
          f"perplexity {result['perplexity']:.3f}")
    return result


def run_lm_eval(args, device) -> dict:
    from babyllama.errors import BabyLlamaError
    from babyllama.evals.bpb import load_for_eval, read_text_documents
    from babyllama.evals.harness import results_table, run_harness

    tasks = [t.strip() for t in (args.tasks or "").split(",") if t.strip()]
    if not tasks:
        raise BabyLlamaError("--task lm_eval needs --tasks NAMES (comma-separated), e.g. --tasks babyllama_text "
                             "--text valid.txt")
    documents = read_text_documents(args.text, args.max_documents) if args.text else None
    model, tokenizer, context = load_for_eval(args.model, device)
    results = run_harness(model, tokenizer, tasks, _context(args, context), args.batch_size, device,
                          args.include_path, documents, args.limit, args.num_fewshot)
    print(results_table(results))
    return results
