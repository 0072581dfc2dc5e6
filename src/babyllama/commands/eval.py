"""babyllama eval: model quality in one place.

  bpb      bits per byte and perplexity of a model on a text file (document by document, lm_eval's rolling way)
  words    does a story use the requested words? (the model and, side by side, its base)
  lm_eval  EleutherAI's lm-evaluation-harness on the model: its tasks, your YAML tasks, or `babyllama_text`
"""

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
    parser.add_argument("--num_prompts", type=int, default=100, help="words: evaluate the first N prompts")
    parser.add_argument("--max_new_tokens", type=int, default=256, help="words: story length at most (tokens)")
    parser.add_argument("--temperature", type=float, default=0.0, help="words: 0 is greedy (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="words: seed when sampling")
    parser.add_argument("--text", default=None,
                        help="bpb (and lm_eval's babyllama_text task): a .txt (separated by <|endoftext|>), "
                             ".jsonl ('text') or .parquet file")
    parser.add_argument("--max_documents", type=int, default=None, help="bpb/lm_eval: score the first N documents")
    parser.add_argument("--seq_len", type=int, default=None,
                        help="bpb/lm_eval: context length of the rolling windows (default: the model's context)")
    parser.add_argument("--tasks", default=None,
                        help="lm_eval: comma-separated task names (lm_eval's, --include_path's, or babyllama_text)")
    parser.add_argument("--include_path", default=None, help="lm_eval: a folder of lm_eval task YAML files")
    parser.add_argument("--limit", type=float, default=None,
                        help="lm_eval: documents per task (a count, or a fraction below 1)")
    parser.add_argument("--num_fewshot", type=int, default=None, help="lm_eval: few-shot examples per question")
    parser.add_argument("--batch_size", type=int, default=16, help="sequences evaluated together")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--out", default=None, help="also write the results to this JSON file")


def run(args) -> int:
    import json
    from pathlib import Path

    from babyllama.errors import BabyLlamaError
    from babyllama.train.device import resolve_device

    if args.batch_size <= 0:
        raise BabyLlamaError("--batch_size must be positive")
    if args.seq_len is not None and args.seq_len <= 0:
        raise BabyLlamaError("--seq_len must be positive")
    device = resolve_device(args.device)
    if args.task == "words":
        results = run_words(args, device)
    elif args.task == "bpb":
        results = run_bpb(args, device)
    else:
        results = run_lm_eval(args, device)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False))
        print(f"wrote {args.out}")
    return 0


def run_words(args, device) -> dict:
    from babyllama.errors import BabyLlamaError
    from babyllama.evals.words import evaluate_words, read_prompts, table

    if not args.prompts:
        raise BabyLlamaError("--task words needs --prompts FILE (make one with `babyllama prepare-sft --heldout N`)")
    if args.num_prompts <= 0 or args.max_new_tokens <= 0 or args.temperature < 0:
        raise BabyLlamaError("--num_prompts, --max_new_tokens must be positive, --temperature >= 0")
    prompts = read_prompts(args.prompts, args.num_prompts)
    models = {}
    if args.base:
        models["base"] = args.base
    models["model"] = args.model
    results = evaluate_words(models, prompts, args.max_new_tokens, args.temperature, args.seed, args.batch_size,
                             device)
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
