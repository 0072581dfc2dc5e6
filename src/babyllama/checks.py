"""One set of rules for the numbers users type (sampling, lengths, counts, seeds), so that every command that
takes the same option accepts and rejects the same values with the same message.

Each rule is a function (name, value) -> value that raises BabyLlamaError naming the option and the allowed
range; `flag_type` turns one into an argparse type, so a bad value stops the command before any work.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Optional

from babyllama.errors import BabyLlamaError

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit integer


def finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise BabyLlamaError(f"--{name} must be a finite number, got {value}")
    return value


def non_negative(name: str, value: float) -> float:
    if not finite(name, value) >= 0:
        raise BabyLlamaError(f"--{name} must be >= 0, got {value}")
    return value


def positive(name: str, value: float) -> float:
    if not finite(name, value) > 0:
        raise BabyLlamaError(f"--{name} must be positive, got {value}")
    return value


def probability_mass(name: str, value: Optional[float]) -> Optional[float]:
    """top_p: in (0, 1]; unset (None) means no nucleus cut."""
    if value is not None and not (math.isfinite(value) and 0 < value <= 1):
        raise BabyLlamaError(f"--{name} must be in (0, 1] (1 keeps every token), got {value}")
    return value


def optional_positive_int(name: str, value: Optional[int]) -> Optional[int]:
    """top_k: >= 1, or unset (None) for no cut."""
    if value is not None and value < 1:
        raise BabyLlamaError(f"--{name} must be >= 1 (or left unset for no cut), got {value}")
    return value


def positive_int(name: str, value: int) -> int:
    if value < 1:
        raise BabyLlamaError(f"--{name} must be >= 1, got {value}")
    return value


def seed(name: str, value: Optional[int]) -> Optional[int]:
    if value is not None and not 0 <= value <= MAX_SEED:
        raise BabyLlamaError(f"--{name} must be between 0 and 2**63-1, got {value}")
    return value


def check_sampling(temperature: float, top_k: Optional[int], top_p: Optional[float]) -> None:
    """The sampling rules, for callers that do not come through the command line (generate())."""
    non_negative("temperature", temperature)
    optional_positive_int("top_k", top_k)
    probability_mass("top_p", top_p)


def flag_type(rule: Callable, name: str, kind: type) -> Callable[[str], object]:
    """An argparse `type` that parses `kind` (None/none allowed where the rule accepts None) and applies `rule`."""

    def convert(text: str):
        if str(text).lower() in ("none", "null"):
            try:
                return rule(name, None)
            except TypeError:
                raise argparse.ArgumentTypeError(f"a value is required, got '{text}'") from None
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got '{text}'") from None
        try:
            return rule(name, value)
        except BabyLlamaError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = kind.__name__
    return convert
