"""babyllama prepare-sft: turn stories into "write a story that uses the words ..." instruction examples."""

HELP = "make story-instruction examples (TinyStoriesInstruct style) from a file of stories"


def add_arguments(parser):
    parser.add_argument("--from_stories", required=True,
                        help="stories: a .txt (separated by <|endoftext|>), .jsonl (field 'text') or .parquet file")
    parser.add_argument("--out", required=True, help="output .jsonl of instruction examples")
    parser.add_argument("--heldout", type=int, default=0,
                        help="hold out this many stories (one prompt each) in OUT's name + .heldout.jsonl, for eval")
    parser.add_argument("--num_words", type=int, default=3, help="words the instruction asks for")
    parser.add_argument("--num_words_max", type=int, default=None,
                        help="ask each training example for between --num_words and this many words (held-out "
                             "prompts keep --num_words)")
    parser.add_argument("--sets_per_story", type=int, default=1,
                        help="examples per training story, each asking for a different set of words")
    parser.add_argument("--sentence_prob", type=float, default=0.3,
                        help="share of instructions that also ask for a sentence of the story")
    parser.add_argument("--max_words", type=int, default=None, help="skip stories longer than this many words")
    parser.add_argument("--model", default=None,
                        help="the model to fine-tune: keep only stories whose example fits its context (with its "
                             "tokenizer and chat template), so `sft` trains on whole stories")
    parser.add_argument("--text_out", default=None,
                        help="also write the training examples as plain text for pretraining "
                             "(TinyStoriesInstruct's 'Words: ...\\nStory: ...'): a .txt (separated by "
                             "<|endoftext|>) or .jsonl ('text') that `babyllama prepare` reads")
    parser.add_argument("--max_examples", type=int, default=None, help="use at most this many stories")
    parser.add_argument("--seed", type=int, default=0, help="seed for the word and sentence choice and the split")


def heldout_path(out):
    from pathlib import Path

    out = Path(out)
    return out.with_name(out.stem + ".heldout.jsonl")


def write_jsonl(path, rows) -> None:
    import json

    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_pretraining_text(path, examples) -> None:
    from pathlib import Path

    from babyllama.errors import BabyLlamaError
    from babyllama.tune.stories import instruct_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        write_jsonl(path, ({"text": instruct_text(e)} for e in examples))
    elif path.suffix == ".txt":
        path.write_text("\n<|endoftext|>\n".join(instruct_text(e) for e in examples) + "\n", encoding="utf-8")
    else:
        raise BabyLlamaError(f"--text_out {path}: use a .txt or .jsonl name")


def run(args) -> int:
    import itertools
    import json
    import random
    from pathlib import Path

    from babyllama.data.sources import read_documents
    from babyllama.errors import BabyLlamaError
    from babyllama.tune.stories import fits, story_example_sets, with_words

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
    if args.text_out:
        check_writable_file("--text_out", args.text_out, inputs)
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
    per_story = story_example_sets(stories, args.num_words, args.sentence_prob, args.seed, args.max_words,
                                   args.sets_per_story, args.num_words_max)
    dropped = 0
    if args.model:
        from babyllama.tune.hfmodel import load_tokenizer, resolve

        folder, adapter = resolve(args.model)  # an adapter checkpoint: the context is its base model's
        context = json.loads((folder / "config.json").read_text()).get("max_position_embeddings", 2048)
        tokenizer = load_tokenizer(adapter or folder)
        # The longest instruction of a story decides whether the story fits.
        kept = [sets for sets in per_story if all(fits(e, tokenizer, context) for e in sets)]
        dropped, per_story = len(per_story) - len(kept), kept
        if not per_story:
            raise BabyLlamaError(f"none of the {dropped} stories fits {args.model}'s context ({context} tokens) as an "
                                 f"instruction example: use shorter stories (--max_words) or a longer-context model")
    if args.heldout < 0 or args.heldout >= len(per_story):
        raise BabyLlamaError(f"--heldout {args.heldout}: there are {len(per_story)} usable stories; keep some to "
                             f"train on")
    # Split by story, so no held-out story is trained on under another word set.
    random.Random(args.seed).shuffle(per_story)
    held = [with_words(sets[0], sets[0]["words"][:args.num_words]) for sets in per_story[:args.heldout]]
    train = [e for sets in per_story[args.heldout:] for e in sets]
    random.Random(args.seed + 1).shuffle(train)
    out = Path(args.out)
    for path, rows in ((out, train), (heldout_path(out), held)):
        if path == out or rows:  # each file whole or not at all
            write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    if args.text_out:
        write_pretraining_text(args.text_out, train)
    print(f"wrote {len(train)} examples ({len(per_story) - len(held)} stories) to {out}" +
          (f" and {len(held)} to {heldout_path(out)}" if held else "") +
          (f"; dropped {dropped} stories that do not fit the model's context ({context} tokens)" if dropped else "") +
          (f"; pretraining text: {args.text_out}" if args.text_out else ""))
    return 0
