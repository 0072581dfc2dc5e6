"""babyllama chat: talk to a fine-tuned model in the terminal (or answer --message non-interactively)."""

import sys

from babyllama.commands.sampling import add_sampling_arguments

HELP = "chat with a fine-tuned model (a run folder or a model folder), using its chat template"


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="run folder, checkpoint folder or Hugging Face model folder")
    parser.add_argument("--message", action="append", default=None,
                        help="answer this message and exit; repeat for a multi-turn conversation")
    parser.add_argument("--system", default=None, help="system message that starts the conversation")
    add_sampling_arguments(parser, temperature=0.0, max_new_tokens=200)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")


def run(args) -> int:
    from babyllama.pathchecks import check_model_path
    from babyllama.infer.chat import ChatSession
    from babyllama.train.device import resolve_device

    check_model_path(args.model)
    session = ChatSession(args.model, resolve_device(args.device), system=args.system)
    options = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, seed=args.seed, guidance_scale=args.guidance_scale,
                   negative_prompt=args.negative_prompt)

    def write(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    if args.message:
        for message in args.message:
            print(f"user: {message}")
            write("assistant: ")
            session.reply(message, on_text=write, **options)
            write("\n")
        return 0
    print("chatting with", args.model, "- empty line or Ctrl-D to quit, /reset to start over")
    while True:
        try:
            message = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if not message:
            return 0
        if message == "/reset":
            session.history = session.history[:1] if args.system else []
            continue
        write("baby> ")
        session.reply(message, on_text=write, **options)
        write("\n")
