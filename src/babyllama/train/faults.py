"""Fault points: named places in the code where a test can make the process die, stall or hit a full disk.

Production code calls `point("checkpoint.weights")`; unless a fault is armed, that is one dict lookup.
A fault is armed in-process with `arm(...)` or, for a child process, with the environment variable

    BABYLLAMA_FAULT="checkpoint.weights=kill@3"      SIGKILL this process the 3rd time it passes the point
    BABYLLAMA_FAULT="train.step=sleep:2.5"           sleep 2.5 s every time (a slow step)
    BABYLLAMA_FAULT="checkpoint.optimizer=enospc@2"  raise OSError(ENOSPC) the 2nd time (a full disk)

Several faults are separated by commas. Why: the reliability tests must kill training *inside* each phase of a
checkpoint save, which random timing alone reaches only by luck (the same idea as etcd's or TiKV's failpoints).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass
from typing import Optional

ENV = "BABYLLAMA_FAULT"


@dataclass
class Fault:
    action: str  # kill, sleep, enospc
    nth: Optional[int] = None  # fire only on this passage (1-based); None: every passage
    seconds: float = 0.0
    seen: int = 0


_armed: dict[str, Fault] = {}


def parse(spec: str) -> dict[str, Fault]:
    faults = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, rule = item.partition("=")
        rule, _, nth = rule.partition("@")
        action, _, arg = rule.partition(":")
        if action not in ("kill", "sleep", "enospc") or not name:
            raise ValueError(f"bad {ENV} entry '{item}': use NAME=kill|sleep:SECONDS|enospc[@N]")
        faults[name.strip()] = Fault(action, int(nth) if nth else None, float(arg or 0))
    return faults


def arm(name: str, action: str, nth: Optional[int] = None, seconds: float = 0.0) -> None:
    _armed[name] = Fault(action, nth, seconds)


def disarm() -> None:
    _armed.clear()


def point(name: str) -> None:
    """Pass a fault point: does nothing unless a fault is armed here."""
    if not _armed:
        return
    fault = _armed.get(name)
    if fault is None:
        return
    fault.seen += 1
    if fault.nth is not None and fault.seen != fault.nth:
        return
    if fault.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # SIGKILL is asynchronous; never run past the point
    elif fault.action == "sleep":
        time.sleep(fault.seconds)
    elif fault.action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


if os.environ.get(ENV):
    _armed.update(parse(os.environ[ENV]))
