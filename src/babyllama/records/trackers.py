"""Experiment trackers (`--report_to`): the same metrics the run folder gets, sent where the user looks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babyllama.errors import BabyLlamaError


class Trackers:
    """Fan-out to every tracker named in report_to."""

    def __init__(self, names: list[str], run_dir: Path, run_name: str, config: dict[str, Any]):
        self.names = [n for n in names if n != "none"]
        if self.names:
            raise BabyLlamaError(f"--report_to {' '.join(self.names)}: trackers are not available yet")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        pass

    def close(self, status: str) -> None:
        pass


def open_trackers(names: list[str], run_dir: Path, run_name: str, config: dict[str, Any]) -> Trackers:
    return Trackers(names, run_dir, run_name, config)
