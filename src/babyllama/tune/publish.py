"""The end of a fine-tuning run: a model card in its model/, and (with --push_to_hub) the finished model on the Hub.

TRL's own push_to_hub would upload the Trainer's output folder (checkpoints, optimizer states, an adapter without
its base); babyllama uploads what `babyllama push` does instead: the merged model, its tokenizer and its card.
So the request is taken away from the Trainer before it starts, checked at once (a repository id, a reachable
Hub), and carried out when the run has finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from babyllama.errors import BabyLlamaError
from babyllama.export.card import write_model_card
from babyllama.export.hub import check_online, check_repo_id, push_run


def take_push_request(config) -> Optional[dict]:
    """The Hub upload asked for with --push_to_hub (None if not), removed from the Trainer's configuration."""
    if not getattr(config, "push_to_hub", False):
        return None
    if not config.hub_model_id:
        raise BabyLlamaError("--push_to_hub needs --hub_model_id USER/NAME: the Hub repository to upload to")
    request = {"repo": check_repo_id(config.hub_model_id), "private": bool(config.hub_private_repo),
               "token": config.hub_token}
    check_online()  # offline: say so now, not after the training
    config.push_to_hub, config.hub_token = False, None  # the Trainer uploads nothing; the token is not recorded
    return request


def publish(run_dir: Path, license: Optional[str], push: Optional[dict], log: Callable[[str], None] = print) -> None:
    card = write_model_card(run_dir / "model", run_dir, license=license)
    log(f"model card: {card}")
    if push:
        url = push_run(run_dir, push["repo"], private=push["private"], token=push["token"], license=license, log=log)
        log(f"pushed to {url}")
