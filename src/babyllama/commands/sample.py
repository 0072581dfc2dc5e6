"""babyllama sample: generate text from a trained model, streamed to the terminal."""

import sys

HELP = "generate text from a model (a run folder or a model folder)"


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="run folder, checkpoint folder or Hugging Face model folder")
    parser.add_argument("--prompt", action="append", default=None,
                        help="text to continue; repeat the flag for several prompts (default: 'Once upon a time')")
    parser.add_argument("--num_samples", type=int, default=1, help="samples per prompt")
    parser.add_argument("--max_new_tokens", type=int, default=200, help="tokens to generate at most")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0 is greedy")
    parser.add_argument("--top_k", type=int, default=None, help="sample among the k most likely tokens")
    parser.add_argument("--top_p", type=float, default=None, help="nucleus sampling: smallest set with this mass")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible samples")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--no_stream", action="store_true", help="print whole samples instead of streaming tokens")


def run(args) -> int:
    from babyllama.errors import BabyLlamaError
    from babyllama.infer.generate import TextStream, generate
    from babyllama.modelio import load_model
    from babyllama.train.device import choose_precision, resolve_device

    if args.max_new_tokens <= 0 or args.num_samples <= 0:
        raise BabyLlamaError("--max_new_tokens and --num_samples must be positive")
    if args.temperature < 0 or (args.top_p is not None and not 0 < args.top_p <= 1) or \
            (args.top_k is not None and args.top_k <= 0):
        raise BabyLlamaError("--temperature must be >= 0, --top_p in (0, 1], --top_k positive")
    device = resolve_device(args.device)
    precision = choose_precision(device, True if args.bf16 else None, False)  # None: bf16 where native
    model, tokenizer, _ = load_model(args.model, device)
    prompts = args.prompt or ["Once upon a time"]
    stream = not args.no_stream
    for p_index, prompt in enumerate(prompts):
        ids = [tokenizer.bos_id] + tokenizer.encode(prompt)
        if len(ids) >= model.config.max_seq_len:
            raise BabyLlamaError(f"the prompt is {len(ids)} tokens; the model's context is {model.config.max_seq_len}")
        for n in range(args.num_samples):
            seed = None if args.seed is None else args.seed + n + 1000 * p_index
            sys.stdout.write(prompt)
            writer = TextStream(tokenizer.decode, lambda text: (sys.stdout.write(text), sys.stdout.flush()))
            out = generate(model, [ids], args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                           top_p=args.top_p, seed=seed, eos_id=tokenizer.eos_id,
                           on_token=writer if stream else None, autocast=precision.autocast)[0]
            if not stream:
                sys.stdout.write(tokenizer.decode(out))
            sys.stdout.write("\n\n" if n + 1 < args.num_samples or p_index + 1 < len(prompts) else "\n")
            sys.stdout.flush()
    return 0
