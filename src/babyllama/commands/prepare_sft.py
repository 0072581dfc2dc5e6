"""babyllama prepare-sft: turn stories into "write a story that uses the words ..." instruction examples."""

HELP = "make story-instruction examples (TinyStoriesInstruct style) from a file of stories"


def add_arguments(parser):
    parser.add_argument("--from_stories", required=True,
                        help="stories: a .txt (separated by <|endoftext|>), .jsonl (field 'text') or .parquet file")
    parser.add_argument("--out", required=True, help="output .jsonl of instruction examples")
    parser.add_argument("--heldout", type=int, default=0,
                        help="also write this many other examples to OUT's name + .heldout.jsonl, for eval")
    parser.add_argument("--num_words", type=int, default=3, help="words the instruction asks for")
    parser.add_argument("--sentence_prob", type=float, default=0.3,
                        help="share of instructions that also ask for a sentence of the story")
    parser.add_argument("--max_words", type=int, default=None, help="skip stories longer than this many words")
    parser.add_argument("--model", default=None,
                        help="drop examples that do not fit this model's context (its tokenizer and template)")
    parser.add_argument("--max_examples", type=int, default=None, help="use at most this many stories")
    parser.add_argument("--seed", type=int, default=0, help="seed for the word and sentence choice and the split")


def heldout_path(out):
    from pathlib import Path

    out = Path(out)
    return out.with_name(out.stem + ".heldout.jsonl")


def run(args) -> int:
    import itertools
    import json
    import random
    from pathlib import Path

    from babyllama.data.sources import read_documents
    from babyllama.errors import BabyLlamaError
    from babyllama.tune.stories import fits_context, story_examples

    from babyllama.pathchecks import check_model_path, check_writable_file, write_text_atomic

    source = Path(args.from_stories)
    if source.is_dir():
        raise BabyLlamaError(f"--from_stories {source} is a folder; give a file of stories (.txt, .jsonl, .parquet)")
    if not source.is_file():
        raise BabyLlamaError(f"--from_stories {source}: no such file")
    inputs = {"--from_stories": args.from_stories, "--model": args.model}
    check_writable_file("--out", args.out, inputs)  # before the work, and never over an input
    if args.heldout:
        check_writable_file("--out (its .heldout.jsonl)", heldout_path(args.out), inputs)
    if args.model:
        check_model_path(args.model)
    for flag in ("num_words", "max_words", "max_examples"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise BabyLlamaError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if not 0 <= args.sentence_prob <= 1:
        raise BabyLlamaError(f"--sentence_prob must be in [0, 1], got {args.sentence_prob}")
    stories = read_documents(source)
    if args.max_examples:
        stories = itertools.islice(stories, args.max_examples)
    examples = story_examples(stories, args.num_words, args.sentence_prob, args.seed, args.max_words)
    dropped = 0
    if args.model:
        from babyllama.tune.hfmodel import load_tokenizer, resolve

        folder, adapter = resolve(args.model)  # an adapter checkpoint: the context is its base model's
        context = json.loads((folder / "config.json").read_text()).get("max_position_embeddings", 2048)
        examples, dropped = fits_context(examples, load_tokenizer(adapter or folder), context)
    if args.heldout < 0 or args.heldout >= len(examples):
        raise BabyLlamaError(f"--heldout {args.heldout}: there are {len(examples)} examples; keep some to train on")
    random.Random(args.seed).shuffle(examples)
    held, train = examples[:args.heldout], examples[args.heldout:]
    out = Path(args.out)
    for path, rows in ((out, train), (heldout_path(out), held)):
        if path == out or rows:  # each file whole or not at all
            write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    print(f"wrote {len(train)} examples to {out}" + (f" and {len(held)} to {heldout_path(out)}" if held else "") +
          (f"; dropped {dropped} that do not fit the model's context" if dropped else ""))
    return 0
