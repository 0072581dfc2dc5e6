"""babyllama sample: generate text from a trained model, streamed to the terminal."""

import sys

from babyllama.commands.sampling import add_sampling_arguments, positive_int_flag

HELP = "generate text from a model (a run folder or a model folder)"


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="run folder, checkpoint folder or Hugging Face model folder")
    parser.add_argument("--prompt", action="append", default=None,
                        help="text to continue; repeat the flag for several prompts (default: 'Once upon a time')")
    parser.add_argument("--num_samples", type=positive_int_flag("num_samples"), default=1, help="samples per prompt")
    add_sampling_arguments(parser, temperature=0.8, max_new_tokens=200)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--no_stream", action="store_true", help="print whole samples instead of streaming tokens")


def run(args) -> int:
    from babyllama.errors import BabyLlamaError
    from babyllama.pathchecks import check_model_path
    from babyllama.infer.generate import TextStream, generate
    from babyllama.modelio import load_model
    from babyllama.train.device import choose_precision, resolve_device

    device = resolve_device(args.device)
    precision = choose_precision(device, True if args.bf16 else None, False)  # None: bf16 where native
    check_model_path(args.model)
    model, tokenizer, _ = load_model(args.model, device)
    prompts = args.prompt or ["Once upon a time"]
    stream = not args.no_stream
    twin = [tokenizer.bos_id] + tokenizer.encode(args.negative_prompt)  # guidance's unconditional prompt
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
                           on_token=writer if stream else None, autocast=precision.autocast,
                           guidance_scale=args.guidance_scale, unconditional=[twin])[0]
            if not stream:
                sys.stdout.write(tokenizer.decode(out))
            sys.stdout.write("\n\n" if n + 1 < args.num_samples or p_index + 1 < len(prompts) else "\n")
            sys.stdout.flush()
    return 0
