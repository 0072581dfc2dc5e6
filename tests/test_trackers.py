"""--report_to: every tracker read back with its own reader, the same metric names everywhere, no secret anywhere.

One child process (so each tracker package picks up its environment: TRACKIO_DIR is read at import) runs
  1. `babyllama pretrain ... --report_to tensorboard wandb mlflow trackio` with secrets planted in the environment;
  2. a fine-tune-style record (kind "sft") whose config holds a hub token and a URI password, with a token on the
     command line, through the same four trackers.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_MODEL, TINY_TRAIN

HF_SECRET = "hf_" + secrets.token_hex(12)
WANDB_SECRET = secrets.token_hex(20)
PASSWORD = "pw" + secrets.token_hex(8)
CONFIG_SECRET = "hf_" + secrets.token_hex(12)
ALL = ["tensorboard", "wandb", "mlflow", "trackio"]

CHILD = r"""
import json, sys
args = json.loads(sys.argv[1])
from babyllama.cli import main
try:
    main(args["pretrain"])
except SystemExit as exit:
    assert not exit.code, exit.code

# A fine-tune-style run: secrets in its config and on its command line.
from pathlib import Path
from babyllama.records.run import RunRecord
sys.argv = ["babyllama", "sft", "--hub_token", args["config_secret"], "--learning_rate", "1e-4"]
config = {"train": {"learning_rate": 1e-4, "hub_token": args["config_secret"], "report_to": args["trackers"],
                    "push_to_hub_token": args["config_secret"],
                    "hub_model_id": "https://me:" + args["password"] + "@example.org/m"},
          "lora": {"r": 8}}
with RunRecord.start(args["runs"], "tune", "sft", config, parent=args["parent"]) as record:
    print(record.arguments_text())
    record.open_trackers(args["trackers"], config)  # owned by the record: closed with the run's status
    for step, loss in ((1, 2.0), (2, 1.5)):
        record.log_metrics({"step": step, "loss": loss, "learning_rate": 1e-4})  # run folder and trackers
    record.update(final_metrics={"eval_loss": 1.4})
"""


@pytest.fixture(scope="module")
def tracked(prepared_512, tmp_path_factory):
    root = tmp_path_factory.mktemp("trackers")
    runs = root / "runs"
    flags = {**TINY_TRAIN, **TINY_MODEL, "max_steps": 4, "logging_steps": 2, "eval_steps": 2,
             "eval_max_tokens": 1024, "num_samples": 0}
    pretrain = ["pretrain", "--data", str(prepared_512), "--output_dir", str(runs), "--run_name", "tracked"]
    for key, value in flags.items():
        pretrain += [f"--{key}", str(value)]
    pretrain += ["--report_to", *ALL]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_", "TRACKIO_"))}
    env.update(TRACKIO_DIR=str(root / "trackio"), HF_TOKEN=HF_SECRET, WANDB_API_KEY=WANDB_SECRET,
               MLFLOW_TRACKING_PASSWORD=PASSWORD, HOME=str(root / "home"), WANDB_SILENT="true")
    args = {"pretrain": pretrain, "runs": str(runs), "trackers": ALL, "config_secret": CONFIG_SECRET,
            "password": PASSWORD, "parent": str(runs / "tracked" / "model")}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root, runs, done.stdout + done.stderr


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _expected(run: Path) -> dict[str, dict[int, float]]:
    """metrics.jsonl under tracker names: {name: {step: value}}."""
    from babyllama.records.trackers import tracker_metric_names

    out: dict[str, dict[int, float]] = {}
    for row in _rows(run):
        for name, value in tracker_metric_names(row).items():
            out.setdefault(name, {})[row["step"]] = value
    return out


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_tensorboard_event_files(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, runs, _ = tracked
    run = runs / "tracked"
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    expected = _expected(run)
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "eval/loss"} <= set(expected)
    assert set(events.Tags()["scalars"]) == set(expected)
    for name, by_step in expected.items():
        got = {e.step: e.value for e in events.Scalars(name)}
        assert got.keys() == by_step.keys(), name
        assert all(abs(got[s] - v) <= 1e-5 * max(1, abs(v)) for s, v in by_step.items()), name
    assert "learning_rate=0.003" in events.Tensors("arguments/text_summary")[0].tensor_proto.string_val[0].decode()


def test_mlflow_local_store(tracked):
    from mlflow.tracking import MlflowClient

    _, runs, _ = tracked
    run = runs / "tracked"
    where = _manifest(run)["trackers"]["mlflow"]
    assert where["tracking_uri"] == f"sqlite:///{runs.resolve() / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=where["tracking_uri"])
    info = client.get_run(where["run_id"])
    assert info.info.status == "FINISHED" and info.info.run_name == "tracked"
    assert info.data.params["train.learning_rate"] == "0.003" and info.data.params["model.dim"] == "64"
    expected = _expected(run)
    assert set(info.data.metrics) == set(expected)
    for name, by_step in expected.items():
        got = {m.step: m.value for m in client.get_metric_history(where["run_id"], name)}
        assert got == pytest.approx(by_step), name


def read_wandb_records(path: Path):
    """wandb's offline run file (a LevelDB-style log of protobuf records) read with wandb's own protobuf schema.

    Layout: a 7-byte header (":W&B", a 2-byte magic, a version byte), then 32 KiB blocks of chunks, each
    crc32 (4 bytes), length (2, little-endian), type (1: full, 2: first, 3: middle, 4: last) and data."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a wandb run file"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            break
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def test_wandb_offline_run_files(tracked):
    _, runs, _ = tracked
    run = runs / "tracked"
    where = _manifest(run)["trackers"]["wandb"]
    assert where["mode"] == "offline" and where["sync"].startswith("wandb sync ")
    run_file = next(Path(where["dir"]).glob("run-*.wandb"))
    history: dict[str, dict[int, float]] = {}
    config, exit_code = {}, None
    for record in read_wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item}
            step = record.history.step.num if record.history.HasField("step") else items.get("_step")
            for name, value in items.items():
                if not name.startswith("_"):
                    history.setdefault(name, {})[int(step)] = value
        elif kind in ("config", "run"):
            updates = record.config.update if kind == "config" else record.run.config.update
            for item in updates:
                config["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
        elif kind == "exit":
            exit_code = record.exit.exit_code
    expected = _expected(run)
    assert set(history) == set(expected)
    for name, by_step in expected.items():
        assert history[name] == pytest.approx(by_step), name
    assert config["train"]["learning_rate"] == 0.003
    assert exit_code == 0


def _trackio_logs(root: Path, run: str) -> list[dict]:
    """trackio's local store, read with trackio's own storage class (in a child: TRACKIO_DIR is read at import)."""
    code = ("import json, sys; from trackio.sqlite_storage import SQLiteStorage; "
            "print(json.dumps(SQLiteStorage.get_logs('babyllama', sys.argv[1])))")
    env = {**os.environ, "TRACKIO_DIR": str(root / "trackio")}
    done = subprocess.run([sys.executable, "-c", code, run], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_trackio_local_store(tracked):
    root, runs, _ = tracked
    run = runs / "tracked"
    assert _manifest(run)["trackers"]["trackio"]["dir"] == str(root / "trackio")
    logs = _trackio_logs(root, "tracked")
    got: dict[str, dict[int, float]] = {}
    for row in logs:
        for name, value in row.items():
            if name not in ("step", "timestamp") and not name.startswith("_"):
                got.setdefault(name, {})[row["step"]] = value
    expected = _expected(run)
    assert set(got) == set(expected)
    for name, by_step in expected.items():
        assert got[name] == pytest.approx(by_step), name


def test_fine_tune_record_reaches_every_tracker_with_its_kind(tracked):
    root, runs, _ = tracked
    manifest = _manifest(runs / "tune")
    assert manifest["kind"] == "sft" and manifest["status"] == "completed"
    assert set(manifest["trackers"]) == set(ALL)
    assert {row["step"]: row["train/loss"] for row in _trackio_logs(root, "tune")} == {1: 2.0, 2: 1.5}


def test_secrets_are_never_written(tracked):
    root, runs, output = tracked
    planted = [HF_SECRET, WANDB_SECRET, PASSWORD, CONFIG_SECRET]
    searched = 0
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.is_symlink():
                continue
            data = path.read_bytes()
            searched += 1
            for secret in planted:
                assert secret.encode() not in data, f"a planted secret is in {path}"
    assert searched > 20
    for secret in planted:
        assert secret not in output  # nor printed
    # The placeholders say what was there, as in a TrainingArguments dump.
    tune = runs / "tune"
    arguments = (tune / "arguments.txt").read_text()
    assert "hub_token=<HUB_TOKEN>" in arguments and "push_to_hub_token=<PUSH_TO_HUB_TOKEN>" in arguments
    assert "hub_model_id=https://me:<PASSWORD>@example.org/m" in arguments
    assert arguments.startswith("SftArguments(") and "LoraConfig(" in arguments
    assert _manifest(tune)["command"] == ["babyllama", "sft", "--hub_token", "<HUB_TOKEN>", "--learning_rate", "1e-4"]


def test_missing_tracker_package_names_it(tmp_path, monkeypatch):
    import importlib.util

    from babyllama.errors import BabyLlamaError
    from babyllama.records import trackers

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(BabyLlamaError, match=r"needs the 'mlflow' package: pip install mlflow"):
        trackers.Trackers(["mlflow"], tmp_path, "x", {})
    assert trackers.resolve_names(["all"]) == ["tensorboard", "wandb", "trackio"]  # only what is installed
    with pytest.raises(BabyLlamaError, match='did you mean "wandb"'):
        trackers.Trackers(["wandbb"], tmp_path, "x", {})
    assert trackers.Trackers(["none"], tmp_path, "x", {}).active == {}


def test_a_failing_tracker_is_dropped_not_fatal(tmp_path, monkeypatch):
    from babyllama.records import trackers

    class Broken:
        def __init__(self, *args):
            self.location, self.logged = {}, []

        def log(self, metrics, step):
            raise ConnectionError("server went away")

        def close(self, status):
            pass

    class Good(Broken):
        def log(self, metrics, step):
            self.logged.append((step, metrics))

    monkeypatch.setitem(trackers.BACKENDS, "wandb", Broken)
    monkeypatch.setitem(trackers.BACKENDS, "mlflow", Good)
    warnings = []
    fan = trackers.Trackers(["wandb", "mlflow"], tmp_path, "x", {}, warn=warnings.append)
    good = fan.active["mlflow"]
    fan.log({"step": 1, "loss": 2.0, "eval_loss": 2.5}, 1)
    fan.log({"step": 2, "loss": 1.0}, 2)
    assert list(fan.active) == ["mlflow"] and len(warnings) == 1 and "server went away" in warnings[0]
    assert good.logged == [(1, {"train/loss": 2.0, "eval/loss": 2.5}), (2, {"train/loss": 1.0})]


def test_a_resumed_run_continues_in_the_same_tracker_runs(tmp_path, monkeypatch):
    from babyllama.records import trackers
    from babyllama.records.run import RunRecord

    seen = []

    class Remembering:
        def __init__(self, run_dir, run_name, config, previous):
            seen.append(previous)
            self.location = {"run_id": previous.get("run_id", "id-1")}

        def log(self, metrics, step):
            pass

        def close(self, status):
            pass

    monkeypatch.setitem(trackers.BACKENDS, "wandb", Remembering)
    with pytest.raises(KeyboardInterrupt):
        with RunRecord.start(str(tmp_path), "r", "pretrain", {}) as record:
            record.open_trackers(["wandb"], {})
            raise KeyboardInterrupt
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["trackers"] == {"wandb": {"run_id": "id-1"}} and manifest["status"] == "interrupted"
    with RunRecord.start(str(tmp_path), "r", "pretrain", {}, resume=True) as again:
        again.open_trackers(["wandb"], {})
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["status"] == "completed"
    assert seen == [{}, {"run_id": "id-1"}]


def test_tracker_that_cannot_start_marks_the_run_failed(tmp_path, monkeypatch):
    from babyllama.errors import BabyLlamaError
    from babyllama.records import trackers
    from babyllama.records.run import RunRecord

    class Unreachable:
        def __init__(self, *args):
            raise ConnectionError("https://bob:hunter2hunter2@mlflow.example.org refused")

    monkeypatch.setitem(trackers.BACKENDS, "mlflow", Unreachable)
    with pytest.raises(BabyLlamaError, match=r"--report_to mlflow: could not start the tracker: .*bob:<PASSWORD>@"):
        with RunRecord.start(str(tmp_path), "r", "pretrain", {}) as record:
            record.open_trackers(["mlflow"], {})
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "hunter2" not in json.dumps(manifest)


def test_fine_tuning_trackers_land_where_the_native_loop_puts_them(tmp_path, monkeypatch):
    from babyllama.records.trackers import hf_tracker_environment

    for name in ("WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "TENSORBOARD_LOGGING_DIR", "MLFLOW_TRACKING_URI",
                 "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_PROJECT", "mine")  # a user's own setting wins
    run = tmp_path / "runs" / "tune"
    where = hf_tracker_environment(["tensorboard", "wandb", "mlflow"], run)
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(run / "tensorboard")
    assert os.environ["WANDB_MODE"] == "offline" and os.environ["WANDB_DIR"] == str(run)
    assert os.environ["WANDB_PROJECT"] == "mine" and where["wandb"]["project"] == "mine"
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{(tmp_path / 'runs').resolve() / 'mlflow.db'}"
