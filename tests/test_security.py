"""Security: no arbitrary unpickling, no remote code, run names that cannot escape the runs folder, secrets kept
out of records, and no listening sockets."""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch

from babyllama.errors import BabyLlamaError
from conftest import REPO, pretrain_tiny

SRC = REPO / "src" / "babyllama"
FAST = dict(per_device_train_batch_size=4, seq_len=32, eval_steps=1000, num_samples=0, logging_steps=1)


def _calls(name: str):
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called == name:
                    yield path, node


def test_every_torch_load_is_weights_only():
    found = list(_calls("load"))
    torch_loads = [(p, n) for p, n in found if isinstance(n.func, ast.Attribute)
                   and getattr(n.func.value, "id", None) == "torch"]
    assert torch_loads  # the scan sees the calls it must check
    for path, node in torch_loads:
        flags = {k.arg: k.value for k in node.keywords}
        assert "weights_only" in flags and getattr(flags["weights_only"], "value", None) is True, \
            f"{path}:{node.lineno} calls torch.load without weights_only=True"


def test_no_trust_remote_code_anywhere():
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                assert getattr(node.value, "value", None) is False, f"{path}:{node.value.lineno} trusts remote code"


class _Payload:
    """Unpickling this would create a file: the proof that a pickle ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_malicious_checkpoint_cannot_run_code(prepared_512, tmp_path):
    from babyllama.train import checkpoint as ckpt

    run = pretrain_tiny(prepared_512, tmp_path, "r", max_steps=1, save_steps=1, **FAST)
    folder = ckpt.list_checkpoints(run)[-1]
    marker = tmp_path / "pwned"
    torch.save({"state": {}, "param_groups": [], "evil": _Payload(marker)}, folder / "optimizer.pt")
    # A forger would also rewrite the checksums, so the index cannot be the defence: the loader must be.
    index = json.loads((folder / "checkpoint.json").read_text())
    index["files"]["optimizer.pt"] = {"bytes": (folder / "optimizer.pt").stat().st_size,
                                      "sha256": ckpt.sha256(folder / "optimizer.pt")}
    (folder / "checkpoint.json").write_text(json.dumps(index))
    with pytest.raises(BabyLlamaError, match=r"refusing to load .*optimizer.pt: it holds Python objects other than "
                                             r"tensors"):
        pretrain_tiny(prepared_512, tmp_path, "r", max_steps=2, resume_from_checkpoint=str(run), **FAST)
    assert not marker.exists()

    # The same for a Hugging Face folder with a pickled pytorch_model.bin.
    from babyllama.modelio import load_model

    model = tmp_path / "hf"
    shutil.copytree(run / "model", model)
    (model / "model.safetensors").unlink()
    torch.save({"x": _Payload(marker)}, model / "pytorch_model.bin")
    with pytest.raises(BabyLlamaError, match="refusing to load"):
        load_model(model)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../escape", "/etc/cron.d/x", "a/b", "..", ".", "..\\x", "-rf", "x" * 200])
def test_run_names_cannot_escape_the_runs_folder(prepared_512, tmp_path, name):
    runs = tmp_path / "runs"
    runs.mkdir()
    with pytest.raises(BabyLlamaError) as err:
        pretrain_tiny(prepared_512, runs, name, max_steps=1, **FAST)
    assert "is not allowed: use letters, digits" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"] and not list(runs.iterdir())


def test_secrets_stay_out_of_records_and_nothing_listens(prepared_512, tmp_path, monkeypatch):
    secret = "hf_SECRETtoken1234567890abcdef"
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY"):
        monkeypatch.setenv(var, secret)
    listened = []
    real_listen, real_bind = socket.socket.listen, socket.socket.bind
    monkeypatch.setattr(socket.socket, "listen", lambda self, *a: listened.append(("listen", a)) or
                        real_listen(self, *a))
    monkeypatch.setattr(socket.socket, "bind", lambda self, addr: listened.append(("bind", addr)) or
                        real_bind(self, addr))
    run = pretrain_tiny(prepared_512, tmp_path, "s", max_steps=2, save_steps=1, **FAST)
    assert listened == []  # no server socket opened by training
    for path in run.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"the secret leaked into {path}"
    assert os.environ["HF_TOKEN"] == secret
