"""The `babyllama` command. Each subcommand lives in babyllama/commands/<name>.py with
HELP, add_arguments(parser) and run(args) -> exit status.

Whatever happens, a user sees one line saying what went wrong and what to do, never a traceback: our own
errors (BabyLlamaError), errors about files (named, with the fix), Ctrl-C (what was kept, for the command that
was interrupted), and anything unexpected (a bug: one line, and how to get the traceback for a report).
`--debug` (or BABYLLAMA_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from babyllama import __version__
from babyllama.errors import BabyLlamaError, did_you_mean

# subcommand name -> module in babyllama.commands
COMMANDS = {
    "quickstart": "quickstart",
    "prepare": "prepare",
    "pretrain": "pretrain",
    "sample": "sample",
    "export": "export",
    "push": "push",
    "runs": "runs",
    "sft": "sft",
    "dpo": "dpo",
    "chat": "chat",
    "prepare-sft": "prepare_sft",
    "eval": "eval",
    "prepare-dpo": "prepare_dpo",
    "grpo": "grpo",
}

# What one Ctrl-C leaves behind, per command: only pretraining has checkpoints and a second-Ctrl-C stop.
INTERRUPTED = {
    "pretrain": "stopped at once by a second Ctrl-C; the last complete checkpoint is kept (resume with "
                "--resume_from_checkpoint)",
    "quickstart": "stopped by Ctrl-C; what was complete is kept: the prepared data if preparing had finished, "
                  "and the run's last complete checkpoint if training had started (resume it with `babyllama "
                  "pretrain --resume_from_checkpoint RUN`)",
    "prepare": "stopped by Ctrl-C; the output folder is unchanged (prepare builds in a staging folder and moves "
               "the result in only when complete)",
    "sft": "stopped by Ctrl-C; no final model/ was written (a run that had started is recorded as interrupted)",
    "dpo": "stopped by Ctrl-C; no final model/ was written (a run that had started is recorded as interrupted)",
    "export": "stopped by Ctrl-C before the export finished; the output may be incomplete: run the export again",
    "prepare-sft": "stopped by Ctrl-C; the output file may be incomplete: run prepare-sft again",
    "eval": "stopped by Ctrl-C; no results were written",
}
DEBUG_HINT = "run again with --debug (or BABYLLAMA_DEBUG=1) for the traceback"

# errno -> what to do about it, for errors about files
FILE_FIXES = {
    errno.EEXIST: "it already exists: choose another path or remove it",
    errno.EISDIR: "it is a folder, not a file: give a file path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.ENOENT: "no such file or folder: check the path",
    errno.EACCES: "permission denied: choose a path you can write to (or fix its permissions)",
    errno.EPERM: "operation not permitted: choose a path you can write to (or fix its permissions)",
    errno.EROFS: "the file system is read-only: choose a path on a writable disk",
    errno.ENOSPC: "no space left on the device: free some space or choose another disk",
    errno.EDQUOT: "disk quota exceeded: free some space or choose another disk",
    errno.ENAMETOOLONG: "the file name is too long: choose a shorter path",
}


def is_heavy(module) -> bool:
    """Commands whose flags come from a large library (sft, dpo: TRL) build them only when they run."""
    return getattr(module, "HEAVY_ARGUMENTS", False)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line. Heavy commands get their flags only when `command` names them, so that
    `babyllama sample ...` does not pay for importing TRL."""
    parser = argparse.ArgumentParser(
        prog="babyllama", allow_abbrev=False, description="Train your own baby Llama 2 end to end, with a record of every run.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `babyllama COMMAND --help` for the options of each command.")
    parser.add_argument("--version", action="version", version=f"babyllama {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (also: environment BABYLLAMA_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser._commands = {}
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"babyllama.commands.{module_name}")
        # No abbreviations: a mistyped option must be an error, not silently another option.
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP, allow_abbrev=False,
                                        formatter_class=argparse.ArgumentDefaultsHelpFormatter
                                        if getattr(module, "SHOW_DEFAULTS", False) else argparse.HelpFormatter)
        if not is_heavy(module) or name == command:
            module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
        parser._commands[name] = command_parser
    return parser


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand word of argv (the first word that names one), before parsing."""
    return next((word for word in argv if word in COMMANDS), None)


def parse(argv: list[str]) -> argparse.Namespace:
    command = chosen_command(argv)
    parser = build_parser(command)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        target = parser._commands.get(args.command, parser)
        options = [o for action in target._actions for o in action.option_strings if o.startswith("--")]
        hint = did_you_mean(unknown[0], options) if unknown[0].startswith("--") else ""
        target.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def debugging(args=None) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("BABYLLAMA_DEBUG", "") not in ("", "0", "false")


def file_error_message(err: OSError) -> str:
    path = err.filename if err.filename is not None else "a file"
    if err.filename2 is not None:
        path = f"{path} -> {err.filename2}"
    fix = FILE_FIXES.get(err.errno, err.strerror or str(err))
    return f"cannot use {path}: {fix}"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, before or after the command
    args = parse((["--debug"] if debug else []) + [word for word in argv if word != "--debug"])
    name = f"babyllama {args.command}"
    try:
        status = args._run(args)
    except BabyLlamaError as err:
        if debugging(args):
            raise
        print(f"{name}: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        if debugging(args):
            raise
        print(f"\n{name}: {INTERRUPTED.get(args.command, 'stopped by Ctrl-C')}", file=sys.stderr)
        sys.exit(130)
    except OSError as err:  # a file that cannot be read or written: name it and say what to do
        if debugging(args):
            raise
        if err.errno is None and err.filename is None:  # an OSError that is not about a file: a bug
            unexpected(name, err)
        print(f"{name}: error: {file_error_message(err)}", file=sys.stderr)
        sys.exit(1)
    except Exception as err:  # noqa: BLE001 - a bug: one line, and how to see more
        if debugging(args):
            raise
        unexpected(name, err)
    sys.exit(status or 0)


def unexpected(name: str, err: BaseException) -> None:
    print(f"{name}: unexpected error: {type(err).__name__}: {err}\n{DEBUG_HINT}; please report it",
          file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
