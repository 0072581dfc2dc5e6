"""Shared plumbing for subcommands: --config files merged under explicit command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from babyllama.config import check_keys, coerce, field_names, load_config_file


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="YAML (or JSON) file of options, or a run's manifest.json to reproduce it; "
                             "command-line flags override it")


def explicit_values(args: argparse.Namespace, *classes) -> list[dict[str, Any]]:
    """Per dataclass: the values from --config, overridden by flags the user actually typed."""
    file_values: dict[str, Any] = {}
    if getattr(args, "config", None):
        file_values = load_config_file(args.config)
        check_keys(file_values, field_names(*classes), f"config file {args.config}")
    typed = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("command", "config")}
    out = []
    for cls in classes:
        names = {f.name for f in dataclasses.fields(cls)}
        values = coerce(cls, {k: v for k, v in file_values.items() if k in names}, f"config file {args.config}"
                        if getattr(args, "config", None) else "config")
        values.update({k: v for k, v in typed.items() if k in names})
        out.append(values)
    return out
