"""`babyllama pretrain --nproc_per_node N`: the torchrun command line that runs the same command on N processes.

babyllama never manages processes itself; it execs torchrun, which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR
and MASTER_PORT for train/distributed.py to join.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from babyllama.errors import BabyLlamaError


def under_launcher() -> bool:
    return "LOCAL_RANK" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ


def torchrun_argv(nproc_per_node: int, command: str, options: dict[str, Any]) -> list[str]:
    """The torchrun command line that runs `babyllama <command>` with the same options on N local processes."""
    if nproc_per_node < 1:
        raise BabyLlamaError(f"--nproc_per_node must be at least 1, got {nproc_per_node}")
    if under_launcher():
        raise BabyLlamaError("--nproc_per_node was given inside a torchrun launch; drop it (torchrun already "
                             "started the processes)")
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
            "-m", "babyllama", command]
    for key, value in options.items():
        argv.append(f"--{key}")
        if isinstance(value, (list, tuple)):
            argv.extend(str(v) for v in value)
        elif isinstance(value, bool):
            argv.append("true" if value else "false")
        elif value is None:
            argv.append("none")
        else:
            argv.append(str(value))
    return argv
