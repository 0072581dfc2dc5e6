"""Sharing a model: the model card, the Ollama Modelfile (its Go template rendered here against the tokenizer's
own chat template), and `push` at the huggingface_hub API boundary (no real upload is made)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from babyllama.config import ModelConfig
from babyllama.data.tokenizer import train_tokenizer
from babyllama.errors import BabyLlamaError
from babyllama.model import Llama
from babyllama.modelio import save_model


@pytest.fixture(scope="module")
def tokenizer(tinystories):
    text = (tinystories / "train.txt").read_text(encoding="utf-8")[:100_000]
    return train_tokenizer(text.split("\n"), 300, show_progress=False)


def make_run(root: Path, tokenizer, name: str, kind: str, parent=None) -> Path:
    """A run folder as the loop and the fine-tuning commands leave it: manifest.json, metrics.jsonl, model/."""
    torch.manual_seed(0)
    model = Llama(ModelConfig(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, hidden_dim=64, max_seq_len=64,
                              vocab_size=tokenizer.vocab_size))
    run = root / name
    save_model(model, run / "model", tokenizer)
    manifest = {"kind": kind, "run_name": name, "status": "completed", "parent": str(parent) if parent else None,
                "started": "2026-11-30T06:00:00+0000", "ended": "2026-11-30T06:05:30+0000",
                "babyllama_version": "0.1.0", "versions": {"torch": "2.13.0"},
                "config": {"train": {"max_steps": 500, "learning_rate": 0.01}},
                "device": {"type": "cuda", "name": "NVIDIA H200", "precision": "bf16"}, "model_parameters": 12345,
                "final_metrics": {"eval_loss": 1.2345, "eval_bpb": 0.987, "step": 500, "tokens_seen": 4096000}}
    if kind == "pretrain":
        manifest["data"] = {"folder": "data/tinystories-4096", "origin": "tinystories", "train_tokens": 1000000}
    else:
        manifest["config"]["train"]["data"] = "instructions.jsonl"
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "metrics.jsonl").write_text("")
    return run


@pytest.fixture(scope="module")
def runs(tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    base = make_run(root, tokenizer, "base", "pretrain")
    return {"base": base, "chat": make_run(root, tokenizer, "chat", "sft", parent=base / "model")}


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_model_card_of_a_base_model(runs, tmp_path):
    from babyllama.export.card import write_export_card

    card = write_export_card(runs["base"], tmp_path / "hf", "hf", license="apache-2.0").read_text()
    meta = front_matter(card)
    assert meta["license"] == "apache-2.0" and meta["pipeline_tag"] == "text-generation"
    assert meta["datasets"] == ["roneneldan/TinyStories"] and "base_model" not in meta
    assert "cdla-sharing-1.0" in card and "NVIDIA H200, bf16" in card and "5m 30s" in card
    assert "0.987" in card and "1,000,000" in card and "4,096,000" in card
    for runtime in ("AutoModelForCausalLM", "llama-completion", "./run ", "ollama create"):
        assert runtime in card
    assert "## Limits" in card


def test_model_card_of_a_fine_tune_and_the_license_default(runs, tmp_path):
    from babyllama.export.card import write_export_card

    card = write_export_card(runs["chat"], tmp_path / "chat.gguf", "gguf").read_text()
    assert (tmp_path / "chat.md").is_file()
    meta = front_matter(card)
    assert meta["license"] == "other" and "--license" in card
    assert "sft" in meta["tags"] and "gguf" in meta["tags"]
    assert meta["datasets"] == ["roneneldan/TinyStories"]  # the base model's data, through the lineage
    assert "chat <- base" in card and "apply_chat_template" in card
    assert "instructions.jsonl" in card and "license not recorded" in card


def test_card_never_replaces_a_users_readme_and_rejects_unknown_licenses(runs, tmp_path):
    from babyllama.export.card import write_export_card

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "README.md").write_text("my notes")
    with pytest.raises(BabyLlamaError, match="not a babyllama model card"):
        write_export_card(runs["base"], tmp_path / "mine", "hf")
    assert (tmp_path / "mine" / "README.md").read_text() == "my notes"
    with pytest.raises(BabyLlamaError, match="license id"):
        write_export_card(runs["base"], tmp_path / "x", "hf", license="my-license")


# --------------------------------------------------------------------------- Ollama's Go templates, rendered here


def render_go(template: str, data: dict) -> str:
    """A renderer for the subset of Go's text/template the Modelfile uses: {{- -}} trimming, if / else if / else /
    end, range $i, $_ := .X, variables ($x := ...), fields (.Role, $.Messages), and eq, ne, not, and, len, slice."""
    tokens = re.split(r"(\{\{-?\s*.*?\s*-?\}\})", template)
    parts = []  # ("text", s) or ("action", s)
    for tok in tokens:
        if tok.startswith("{{"):
            if tok.startswith("{{-") and parts and parts[-1][0] == "text":
                parts[-1] = ("text", parts[-1][1].rstrip())
            parts.append(("action", tok.strip("{}").strip("-").strip()))
            parts.append(("trim", tok.endswith("-}}")))
        else:
            if parts and parts[-1] == ("trim", True):
                tok = tok.lstrip()
            parts.append(("text", tok))
    parts = [p for p in parts if p[0] != "trim"]

    def parse(i, stop):
        nodes = []
        while i < len(parts):
            kind, value = parts[i]
            if kind == "text":
                nodes.append(("text", value))
                i += 1
            elif value.split()[0] in stop:
                return nodes, i
            elif value.startswith("if "):
                branches, i = [], i
                cond = value[3:]
                while True:
                    body, i = parse(i + 1, ("else", "end"))
                    branches.append((cond, body))
                    word = parts[i][1]
                    if word == "end":
                        break
                    cond = word[len("else if "):] if word.startswith("else if ") else "true"
                nodes.append(("if", branches))
                i += 1
            elif value.startswith("range "):
                body, i = parse(i + 1, ("end",))
                nodes.append(("range", value[6:], body))
                i += 1
            else:
                nodes.append(("expr", value))
                i += 1
        return nodes, i

    def split_args(expr):
        out, depth, cur = [], 0, ""
        for ch in expr + " ":
            if ch == " " and depth == 0:
                if cur:
                    out.append(cur)
                cur = ""
                continue
            depth += (ch == "(") - (ch == ")")
            cur += ch
        return out

    def value_of(expr, dot, env):
        expr = expr.strip()
        if expr.startswith("(") and expr.endswith(")"):
            return value_of(expr[1:-1], dot, env)
        if expr == "true":
            return True
        if expr.startswith('"'):
            return json.loads(expr)
        if re.fullmatch(r"-?\d+", expr):
            return int(expr)
        args = split_args(expr)
        if len(args) > 1:
            fn, vals = args[0], [value_of(a, dot, env) for a in args[1:]]
            return {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "not": lambda a: not a,
                    "and": lambda *a: all(a), "len": len, "slice": lambda x, i: x[i:]}[fn](*vals)
        if expr.startswith("$."):
            return env["$"][expr[2:]]
        if expr.startswith("$"):
            return env[expr]
        if expr.startswith("."):
            return dot[expr[1:]]
        raise AssertionError(f"unsupported expression {expr!r}")

    def run(nodes, dot, env):
        out = ""
        for node in nodes:
            if node[0] == "text":
                out += node[1]
            elif node[0] == "expr":
                if ":=" in node[1]:
                    name, expr = node[1].split(":=")
                    env[name.strip()] = value_of(expr, dot, env)
                else:
                    out += str(value_of(node[1], dot, env))
            elif node[0] == "if":
                for cond, body in node[1]:
                    if value_of(cond, dot, env):
                        out += run(body, dot, env)
                        break
            else:
                names, expr = node[1].split(":=")
                index_name, _ = [n.strip() for n in names.split(",")]
                for i, item in enumerate(value_of(expr, dot, env)):
                    out += run(node[2], item, {**env, index_name: i})
        return out

    nodes, _ = parse(0, ())
    return run(nodes, data, {"$": data})


CONVERSATIONS = [
    [{"role": "user", "content": "Name a color of the sky."}],
    [{"role": "system", "content": "You are kind."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "  spaces  and\nnewlines "}],
]


def as_ollama(messages):
    return [{"Role": m["role"], "Content": m["content"]} for m in messages]  # Ollama's api.Message fields


def test_ollama_chat_template_renders_like_the_tokenizers_chat_template(runs):
    from transformers import AutoTokenizer

    from babyllama.export.modelfile import CHAT_TEMPLATE_GO

    hf = AutoTokenizer.from_pretrained(str(runs["chat"] / "model"))
    for messages in CONVERSATIONS:
        ours = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # Ollama adds BOS itself (add_bos_token in the GGUF file): the template has no <s>
        assert "<s>" + render_go(CHAT_TEMPLATE_GO, {"Messages": as_ollama(messages)}) == ours
        # a last assistant message is left open for Ollama to continue
        prefill = messages + [{"role": "assistant", "content": "Once"}]
        closed = hf.apply_chat_template(prefill, tokenize=False)
        assert "<s>" + render_go(CHAT_TEMPLATE_GO, {"Messages": as_ollama(prefill)}) == closed[:-len("<|end|>")]


def test_gguf_export_writes_a_modelfile(runs, tmp_path):
    from babyllama.cli import main

    for name, run_dir, out in (("chat", runs["chat"], tmp_path / "chat-q8_0.gguf"), ("base", runs["base"], tmp_path / "b")):
        with pytest.raises(SystemExit) as done:
            main(["export", "--model", str(run_dir), "--format", "gguf", "--gguf_type", "f16", "--out", str(out)])
        assert done.value.code == 0
        modelfile = (tmp_path / "chat-q8_0.Modelfile" if name == "chat" else out / "Modelfile").read_text()
        gguf_name = "chat-q8_0.gguf" if name == "chat" else "model-f16.gguf"
        assert f"FROM ./{gguf_name}" in modelfile and "PARAMETER num_ctx 64" in modelfile
        template = re.search(r'TEMPLATE """(.*?)"""', modelfile, re.S).group(1)
        if name == "chat":
            assert 'PARAMETER stop "<|end|>"' in modelfile and "<|assistant|>" in template
        else:
            assert template == "{{ .Prompt }}" and "<|end|>" not in modelfile
    assert (tmp_path / "chat-q8_0.md").is_file() and (tmp_path / "b" / "README.md").is_file()


# --------------------------------------------------------------------------- push, at the huggingface_hub boundary


class FakeHub:
    def __init__(self):
        self.calls, self.uploaded = [], {}

    def install(self, monkeypatch):
        import huggingface_hub

        hub = self

        class Api:
            def __init__(self, token=None, **_):
                hub.calls.append(("init", token))

            def create_repo(self, repo_id, private=None, exist_ok=False, **_):
                hub.calls.append(("create_repo", repo_id, private, exist_ok))
                return f"https://huggingface.co/{repo_id}"

            def upload_folder(self, repo_id, folder_path, **kwargs):
                hub.calls.append(("upload_folder", repo_id))
                hub.uploaded = {str(p.relative_to(folder_path)): p.read_bytes()
                                for p in Path(folder_path).rglob("*") if p.is_file()}

        monkeypatch.setattr(huggingface_hub, "HfApi", Api)
        monkeypatch.setattr("babyllama.export.hub.check_online", lambda: None)
        return self


def test_push_uploads_the_exported_model_not_checkpoints(runs, monkeypatch, capsys):
    from babyllama.cli import main

    (runs["chat"] / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (runs["chat"] / "checkpoints" / "checkpoint-2" / "optimizer.pt").write_bytes(b"x")
    hub = FakeHub().install(monkeypatch)
    with pytest.raises(SystemExit) as done:
        main(["push", "--model", str(runs["chat"]), "--repo", "someone/baby-chat", "--private",
              "--token", "hf_secretsecretsecret", "--license", "mit", "--gguf_type", "q8_0"])
    assert done.value.code == 0
    assert hub.calls[0] == ("init", "hf_secretsecretsecret")
    assert ("create_repo", "someone/baby-chat", True, True) in hub.calls and hub.calls[-1][0] == "upload_folder"
    files = set(hub.uploaded)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
            "model-q8_0.gguf", "model-q8_0.Modelfile"} <= files
    assert not any("checkpoint" in f or "optimizer" in f or f == "manifest.json" for f in files)
    card = hub.uploaded["README.md"].decode()
    assert front_matter(card)["license"] == "mit" and "someone/baby-chat" in card
    assert all(b"hf_secretsecretsecret" not in data for data in hub.uploaded.values())
    assert "hf_secret" not in capsys.readouterr().out


def test_push_fails_at_once_offline_and_on_bad_input(runs, monkeypatch, capsys):
    from babyllama.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for argv, message in ((["--repo", "someone/x"], "offline"), (["--repo", "no-slash"], "must be user/name")):
        with pytest.raises(SystemExit) as done:
            main(["push", "--model", str(runs["base"])] + argv)
        assert done.value.code == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
