"""Stopping a training run on request: finish the step, checkpoint, exit with the shell's status for the signal."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable, Optional


class StopRequest:
    """SIGINT/SIGTERM ask the loop to finish its step and checkpoint; a second Ctrl-C stops at once.

    Exit statuses: 130 after SIGINT, 143 after SIGTERM (128 + signal number, as shells report them). If the step
    and checkpoint take longer than `timeout` seconds, the process exits at once with the same status: the
    previous checkpoint is complete (saves are atomic), so a scheduler's grace period is never overrun.
    """

    def __init__(self, timeout: Optional[float] = None, on_timeout: Optional[Callable[[str], None]] = None):
        self.requested: Optional[str] = None
        self._previous: dict = {}
        self.timeout, self.on_timeout = timeout, on_timeout
        self._timer: Optional[threading.Timer] = None

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        if self.timeout and self._timer is None:
            self._timer = threading.Timer(self.timeout, self._force_exit)
            self._timer.daemon = True
            self._timer.start()

    def _force_exit(self):
        message = (f"{self.requested}: the step and checkpoint did not finish within --stop_timeout "
                   f"{self.timeout:g}s; exiting now (the previous checkpoint is complete)")
        try:
            print(message, file=sys.stderr, flush=True)
            if self.on_timeout:
                self.on_timeout(message)
        finally:
            os._exit(130 if self.requested == "SIGINT" else 143)

    @property
    def exit_status(self) -> int:
        return 130 if self.requested == "SIGINT" else 143

    def __exit__(self, *exc):
        if self._timer is not None:
            self._timer.cancel()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
