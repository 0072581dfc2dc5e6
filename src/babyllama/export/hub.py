"""Publishing to the Hugging Face Hub: the exported model (merged weights, tokenizer, model card, optionally a GGUF
file and its Ollama Modelfile) -- never the Trainer's checkpoints, optimizer states or run internals.

The token is handed to huggingface_hub and nowhere else: it is not written into the card, the run or any log.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlparse

from babyllama.errors import BabyLlamaError

REPO_ID_HELP = "user/name or org/name"


def check_online() -> None:
    """Fail at once, before exporting anything, when the Hub cannot be reached."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") or constants.HF_HUB_OFFLINE:
        raise BabyLlamaError("cannot push: HF_HUB_OFFLINE is set (offline mode); unset it on a machine with network "
                             "access, or copy the folder from `babyllama export --format hf` there")
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    port = urlparse(constants.ENDPOINT).port or 443
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as err:
        raise BabyLlamaError(f"cannot push: the Hugging Face Hub ({host}) is not reachable from here ({err}); "
                             f"push from a machine with network access (the folder from `babyllama export --format "
                             f"hf` holds everything)") from None


def check_repo_id(repo: str) -> str:
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or any(p.startswith(("-", ".")) for p in parts):
        raise BabyLlamaError(f"--repo {repo!r} must be {REPO_ID_HELP}")
    return repo


def push_run(model: str | Path, repo: str, *, private: bool = False, token: Optional[str] = None,
             license: Optional[str] = None, gguf_type: Optional[str] = None, commit_message: Optional[str] = None,
             log: Callable[[str], None] = print) -> str:
    """Export `model` (a run, checkpoint or model folder; a LoRA fine-tune is merged into its base) and upload it
    to the Hub repository `repo`. Returns the repository's URL. `--push_to_hub` on sft/dpo calls this at the end."""
    from huggingface_hub import HfApi

    from babyllama.export.card import check_license, write_model_card
    from babyllama.export.hf import export_hf
    from babyllama.export.modelfile import write_modelfile

    check_repo_id(repo)
    license = check_license(license)
    check_online()
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="babyllama-push-") as tmp:
        folder = export_hf(model, Path(tmp) / "model")
        formats = ["hf"]
        if gguf_type:
            from babyllama.export.gguf import export_gguf

            gguf = export_gguf(model, folder / f"model-{gguf_type}.gguf", gguf_type)
            write_modelfile(model, gguf, gguf)
            formats.append("gguf")
        write_model_card(folder, run=model, license=license, formats=formats, repo_id=repo)
        try:
            url = api.create_repo(repo, private=private, exist_ok=True)
            api.upload_folder(repo_id=repo, folder_path=str(folder),
                              commit_message=commit_message or f"Upload {Path(model).name} with babyllama")
        except Exception as err:  # HTTP errors (no or wrong token, no rights) come back as the Hub words them
            message = str(err).replace(token, "***") if token else str(err)
            raise BabyLlamaError(f"pushing to {repo} failed: {message.splitlines()[0] if message else type(err).__name__}"
                                 f"; check the repository name and your token (--token, HF_TOKEN or `hf auth login`)"
                                 ) from None
    log(f"pushed {model} to {url}")
    return str(url)
