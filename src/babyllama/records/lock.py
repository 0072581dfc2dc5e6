"""One writer per run: the process that trains a run holds an OS lock (fcntl.flock) on the run folder's `.lock`.

The kernel drops the lock when the process ends, however it ends (kill -9 included), so a dead run never blocks a
resume. Who holds it (pid, host, command, start time) is written into the lock file, so a second process can say
whom it is waiting for.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Optional

from babyllama.errors import BabyLlamaError
from babyllama.layout import LOCK
from babyllama.records.redact import redact_argv


def _describe(owner: dict) -> str:
    if not owner:
        return "another process (it left no details)"
    return (f"process {owner.get('pid')} on {owner.get('host')} (started {owner.get('started')}: "
            f"{owner.get('command')})")


class RunLock:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> "RunLock":
        """Take the lock, or stop at once naming the process that holds it."""
        if self._handle is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = _parse(handle.read())
            handle.close()
            raise in_use(self.folder, owner) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "command": " ".join(redact_argv(sys.argv)),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            try:
                fcntl.flock(self._handle, fcntl.LOCK_UN)
            finally:
                self._handle.close()
                self._handle = None

    @staticmethod
    def owner(folder: str | Path) -> Optional[dict]:
        """Who holds the lock of a run folder right now (None: nobody)."""
        path = Path(folder) / LOCK
        if not path.is_file():
            return None
        with open(path, "r", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _parse(handle.read()) or {}
            fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def in_use(folder: Path, owner: dict) -> BabyLlamaError:
    return BabyLlamaError(f"run folder {folder} is in use by {_describe(owner)}; one process writes a run at a time. "
                          f"Wait for it to finish (or stop it: kill {owner.get('pid', 'PID')}), or choose another "
                          f"--run_name")


def check_free(folder: str | Path) -> None:
    """Stop at once when a live process holds the run (the binding check is taking the lock, later)."""
    owner = RunLock.owner(folder)
    if owner is not None:
        raise in_use(Path(folder), owner)


def _parse(text: str) -> dict:
    try:
        owner = json.loads(text)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}
