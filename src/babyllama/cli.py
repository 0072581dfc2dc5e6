"""The `babyllama` command. Each subcommand lives in babyllama/commands/<name>.py with
HELP, add_arguments(parser) and run(args) -> exit status."""

from __future__ import annotations

import argparse
import importlib
import sys

from babyllama import __version__
from babyllama.errors import BabyLlamaError

# subcommand name -> module in babyllama.commands
COMMANDS = {
    "quickstart": "quickstart",
    "prepare": "prepare",
    "pretrain": "pretrain",
    "sample": "sample",
    "export": "export",
    "runs": "runs",
    "sft": "sft",
    "dpo": "dpo",
    "chat": "chat",
    "prepare-sft": "prepare_sft",
    "eval": "eval",
    "prepare-dpo": "prepare_dpo",
    "grpo": "grpo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="babyllama", allow_abbrev=False, description="Train your own baby Llama 2 end to end, with a record of every run.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `babyllama COMMAND --help` for the options of each command.")
    parser.add_argument("--version", action="version", version=f"babyllama {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"babyllama.commands.{module_name}")
        # No abbreviations: a mistyped option must be an error, not silently another option.
        command = sub.add_parser(name, help=module.HELP, description=module.HELP, allow_abbrev=False,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter
                                 if getattr(module, "SHOW_DEFAULTS", False) else argparse.HelpFormatter)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    # Commands that set `_raw_args` (sft, dpo) parse their flags with Hugging Face's own parser in run(),
    # so they receive the words argparse did not know; every other command rejects them as before.
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "_raw_args", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args._argv = unknown
    try:
        status = args._run(args)
    except BabyLlamaError as err:
        print(f"babyllama {args.command}: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, without a traceback
        print(f"babyllama {args.command}: stopped at once by a second Ctrl-C; the last complete checkpoint is "
              f"kept (resume with --resume_from_checkpoint)", file=sys.stderr)
        sys.exit(130)
    sys.exit(status or 0)


if __name__ == "__main__":
    main()
