"""The model card: a README.md in the Hugging Face Hub's format (YAML metadata, then Markdown) for an exported
folder or a run's model/, written from the run record, so a shared model says what it is and where it came from.

    write_model_card(folder, run=None, license=None)     a model folder (an hf export, a run's model/)
    write_export_card(model, out, format, license)       beside any export (README.md in a folder, NAME.md by a file)

A card is rewritten only when babyllama wrote it (it carries CARD_MARK): a user's own README.md is never replaced.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Optional

from babyllama.errors import BabyLlamaError

DEFAULT_LICENSE = "other"
# Licenses the Hub knows by id (a subset: the common ones for weights); anything else must be "other".
HUB_LICENSES = ("apache-2.0", "mit", "bsd-3-clause", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc0-1.0",
                "openrail", "creativeml-openrail-m", "llama2", "gpl-3.0", "cdla-sharing-1.0", "cdla-permissive-2.0",
                "unlicense", "other")
# Data provenance: a corpus name found in the data's origin or source files -> Hub dataset id and its license.
KNOWN_DATASETS = {
    "tinystories": ("roneneldan/TinyStories", "cdla-sharing-1.0"),
}
CARD_MARK = "<!-- model card written by babyllama -->"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_license(license: Optional[str]) -> str:
    license = (license or DEFAULT_LICENSE).lower()
    if license not in HUB_LICENSES:
        raise BabyLlamaError(f"--license {license!r} is not a license id the Hub knows; use one of "
                             f"{', '.join(HUB_LICENSES)} (\"other\" for anything else, and say which in the card)")
    return license


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def _run_folder(path: Optional[str | Path]) -> Optional[Path]:
    from babyllama.records.registry import run_folder_of

    return run_folder_of(str(path)) if path else None


def _data_provenance(manifest: dict) -> list[dict]:
    """The datasets behind a run and its ancestors: [{id, license, origin}], nearest first."""
    found, seen = [], set()
    chain, folder = [manifest], None
    while (parent := chain[-1].get("parent")) and len(chain) < 10:
        folder = _run_folder(parent)
        if folder is None:
            break
        chain.append(_load_json(folder / "manifest.json"))
    for m in chain:
        data = m.get("data") if isinstance(m.get("data"), dict) else {"origin": m.get("data")}
        train = (m.get("config") or {}).get("train") or {}
        origin = str(data.get("origin") or train.get("data") or data.get("folder") or "")
        text = origin.lower() + " " + str(data.get("folder") or "").lower()
        if data.get("folder"):  # the prepared data's own manifest names its source files
            data_folder = Path(m.get("cwd") or ".") / data["folder"]
            text += " " + json.dumps(_load_json(data_folder / "manifest.json").get("sources", "")).lower()
        hub = next(((hub_id, lic) for key, (hub_id, lic) in KNOWN_DATASETS.items() if key in text), None)
        entry = {"id": hub[0] if hub else None, "license": hub[1] if hub else None, "origin": origin or "unrecorded",
                 "kind": m.get("kind", "?")}
        key = entry["id"] or entry["origin"]
        if key not in seen:
            seen.add(key)
            found.append(entry)
    return found


def _final_metrics(run: Path, manifest: dict) -> dict:
    metrics = dict(manifest.get("final_metrics") or {})
    if not metrics and (run / "metrics.jsonl").is_file():
        for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            metrics.update({k: v for k, v in row.items() if k.startswith(("eval_", "train_loss", "loss"))
                            and isinstance(v, (int, float))})
            for key in ("step", "tokens_seen", "num_input_tokens_seen"):
                if isinstance(row.get(key), (int, float)):
                    metrics[key] = row[key]
    return metrics


def _duration(manifest: dict) -> Optional[str]:
    try:
        start = datetime.strptime(manifest["started"], "%Y-%m-%dT%H:%M:%S%z")
        end = datetime.strptime(manifest["ended"], "%Y-%m-%dT%H:%M:%S%z")
    except (KeyError, TypeError, ValueError):
        return None
    seconds = int((end - start).total_seconds())
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m {seconds % 60:02d}s" if seconds >= 3600 else \
        f"{seconds // 60}m {seconds % 60:02d}s"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _yaml(meta: dict) -> str:
    lines = []
    for key, value in meta.items():
        if value is None:
            continue
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"- {json.dumps(v)}" for v in value]
        else:
            lines.append(f"{key}: {json.dumps(value)}")
    return "\n".join(lines)


def model_card(folder: Path, run: Optional[Path] = None, license: Optional[str] = None,
               formats: Iterable[str] = ("hf",), base_model: Optional[str] = None,
               repo_id: Optional[str] = None) -> str:
    """The README.md text for a model folder (see write_model_card)."""
    folder = Path(folder)
    config = _load_json(folder / "config.json")
    manifest = _load_json(run / "manifest.json") if run else {}
    train_cfg = (manifest.get("config") or {}).get("train") or {}
    license = check_license(license or train_cfg.get("license"))
    kind = manifest.get("kind", "model")
    name = repo_id or manifest.get("run_name") or folder.name
    parent = manifest.get("parent")
    fine_tuned = kind in ("sft", "dpo") or bool(parent)
    if base_model is None and parent and HUB_ID.match(str(parent)) and not Path(str(parent)).exists():
        base_model = str(parent)  # the parent was a Hub model: the Hub links the two
    datasets = _data_provenance(manifest) if manifest else []
    # (a fine-tune's folder may lack tokenizer.model: its exports rebuild it from tokenizer.json)
    sentencepiece = (folder / "tokenizer.model").is_file() or '"ByteFallback"' in _text(folder / "tokenizer.json")
    tokenizer_type = "SentencePiece BPE with byte fallback (tokenizer.model)" if sentencepiece else "byte-level BPE"
    from babyllama.export.modelfile import is_chat_model

    chat = is_chat_model(folder) if not manifest else kind in ("sft", "dpo")
    formats = list(formats)

    meta = {
        "license": license,
        "license_name": "unspecified" if license == "other" else None,
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "language": ["en"],
        "tags": ["babyllama", "llama", "llama-2", "text-generation"] + (["gguf"] if "gguf" in formats else [])
                + (["llama2.c"] if "llama2c" in formats else []) + ([kind] if kind in ("sft", "dpo") else []),
        "datasets": sorted({d["id"] for d in datasets if d["id"]}) or None,
        "base_model": base_model,
    }
    out = ["---", _yaml(meta)]
    if fine_tuned and not base_model:
        out.append("# base_model: put the Hub id of the parent model here once it is published")
    out += ["---", CARD_MARK, "", f"# {name}", ""]

    params = manifest.get("model_parameters")
    shape = (f"{config.get('num_hidden_layers', '?')} layers, hidden size {config.get('hidden_size', '?')}, "
             f"{config.get('num_attention_heads', '?')} heads ({config.get('num_key_value_heads', '?')} key/value), "
             f"vocabulary {config.get('vocab_size', '?')}, context {config.get('max_position_embeddings', '?')} tokens")
    what = {"pretrain": "a base (pretrained) model: it continues text",
            "sft": "a fine-tuned chat model (supervised fine-tuning)",
            "dpo": "a preference-tuned chat model (DPO)"}.get(kind, "a Llama 2 model")
    out += [f"A small Llama 2 architecture language model ({_fmt(params) + ' parameters, ' if params else ''}{shape}) "
            f"trained with [babyllama](https://github.com/OWNER/babyllama): {what}. "
            f"`LlamaForCausalLM` loads it as is. Tokenizer: {tokenizer_type}, `<s>` = 1, `</s>` = 2.", ""]

    out += ["## Training", ""]
    if manifest:
        metrics = _final_metrics(run, manifest)
        device = manifest.get("device") or {}
        rows = [
            ("run", f"`{manifest.get('run_name', run.name)}` ({kind}, status {manifest.get('status', '?')})"),
            ("data", "; ".join(f"{d['origin']}" + (f" (Hub `{d['id']}`, license {d['license']})" if d["id"] else
                                                   " (license not recorded)") for d in datasets[:1]) or None),
            ("lineage", " <- ".join([manifest.get("run_name", run.name)] + _lineage(manifest)) if parent else None),
            ("training tokens", _fmt((manifest.get("data") or {}).get("train_tokens"))
             if isinstance(manifest.get("data"), dict) and (manifest["data"].get("train_tokens")) else None),
            ("tokens seen", _fmt(metrics.get("tokens_seen") or metrics.get("num_input_tokens_seen"))
             if metrics.get("tokens_seen") or metrics.get("num_input_tokens_seen") else None),
            ("steps", _fmt(metrics.get("step") or train_cfg.get("max_steps")) if metrics.get("step")
             or train_cfg.get("max_steps") else None),
            ("learning rate", _fmt(train_cfg.get("learning_rate")) if train_cfg.get("learning_rate") else None),
            ("time", _duration(manifest)),
            ("hardware", f"{device.get('name', device.get('type'))}, {device.get('precision', '?')}" if device
             else (manifest.get("host") or {}).get("platform")),
            ("software", f"babyllama {manifest.get('babyllama_version', '?')}, torch "
                         f"{(manifest.get('versions') or {}).get('torch', '?')}"),
        ]
        for key, label in (("eval_loss", "final validation loss"), ("eval_bpb", "final validation bits/byte"),
                           ("eval_perplexity", "final validation perplexity"), ("train_loss", "final train loss")):
            if isinstance(metrics.get(key), (int, float)):
                rows.append((label, _fmt(metrics[key])))
        out += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows if v not in (None, "None")]
        out += ["", f"The full record (configuration, metrics per step, samples) is the run folder's `manifest.json` "
                f"and `metrics.jsonl`; `babyllama runs show {manifest.get('run_name', run.name)}` prints it.", ""]
    else:
        out += ["No run record was found with this model, so its training is not described here.", ""]

    out += ["## License", "",
            f"Weights: `{license}`" + (" (no license was chosen: pass `--license` to `babyllama export`)"
                                       if license == "other" else "") + "."]
    for d in datasets:
        if d["id"]:
            out.append(f"Training data: [{d['id']}](https://huggingface.co/datasets/{d['id']}), `{d['license']}`.")
        else:
            out.append(f"Training data ({d['kind']}): `{d['origin']}`, license not recorded: check it before sharing.")
    out.append("")

    out += _how_to_run(name, chat, sentencepiece, formats)
    out += ["## Limits", "",
            "- A baby model: it writes simple English in the style of its training data and little else. It knows "
            "no facts worth trusting, cannot follow complex instructions and makes mistakes in every long text.",
            f"- Context: {config.get('max_position_embeddings', '?')} tokens; text beyond it is not seen.",
            "- No safety tuning and no evaluation beyond validation loss" + (" and the fine-tuning checks" if
                                                                              fine_tuned else "") + ".",
            "- Trained for learning and experiments, not for production use.", ""]
    return "\n".join(out)


def _lineage(manifest: dict) -> list[str]:
    chain, current = [], manifest
    while (parent := current.get("parent")) and len(chain) < 10:
        folder = _run_folder(parent)
        if folder is None:
            chain.append(str(parent))
            break
        current = _load_json(folder / "manifest.json")
        chain.append(current.get("run_name", folder.name))
    return chain


def _how_to_run(name: str, chat: bool, sentencepiece: bool, formats: list[str]) -> list[str]:
    prompt = "<|user|>Name a color of the sky.<|end|><|assistant|>" if chat else "Once upon a time"
    out = ["## How to run it", "", "### transformers", "", "```python",
           "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
           f'tokenizer = AutoTokenizer.from_pretrained("{name}")',
           f'model = AutoModelForCausalLM.from_pretrained("{name}")']
    if chat:
        out += ['messages = [{"role": "user", "content": "Name a color of the sky."}]',
                "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\","
                " return_dict=True)"]
    else:
        out += ['inputs = tokenizer("Once upon a time", return_tensors="pt")']
    out += ["out = model.generate(**inputs, max_new_tokens=200, do_sample=False)",
            "print(tokenizer.decode(out[0], skip_special_tokens=True))", "```", "",
            "### llama.cpp and Ollama", "", "```bash",
            "babyllama export --model RUN --format gguf --gguf_type q8_0 --out model-q8_0.gguf   # + model-q8_0.Modelfile"]
    if sentencepiece:
        out.append("# or llama.cpp's own converter (this model has a SentencePiece tokenizer.model):\n"
                   "# python convert_hf_to_gguf.py FOLDER --outfile model-f16.gguf --outtype f16")
    out += [f"llama-completion -m model-q8_0.gguf -n 200 --temp 0 -p '{prompt}'" if not chat else
            "llama-cli -m model-q8_0.gguf -cnv      # the chat template travels in the GGUF file",
            "ollama create babyllama -f model-q8_0.Modelfile && ollama run babyllama", "```", "",
            "### llama2.c", "", "```bash",
            "babyllama export --model RUN --format llama2c --out l2c     # model.bin + tokenizer.bin",
            "./run l2c/model.bin -z l2c/tokenizer.bin -t 0 -n 256 -i 'Once upon a time'", "```", ""]
    if not sentencepiece:
        out += ["run.c puts a space before the prompt (SentencePiece's dummy prefix): with this byte-level BPE "
                "tokenizer it continues `\" Once upon a time\"`, so its text differs from the examples above.", ""]
    return out


def write_model_card(folder: str | Path, run: Optional[str | Path] = None, license: Optional[str] = None,
                     formats: Iterable[str] = ("hf",), base_model: Optional[str] = None,
                     repo_id: Optional[str] = None) -> Path:
    """Write folder/README.md. `run`: the run folder or anything inside it (a checkpoint, its model/); found from
    `folder` itself when not given (a run's model/). Returns the card's path."""
    folder = Path(folder)
    run_dir = _run_folder(run) if run else _run_folder(folder)
    return _write(folder / "README.md", model_card(folder, run_dir, license, formats, base_model, repo_id))


def _write(path: Path, text: str) -> Path:
    if path.is_file() and CARD_MARK not in path.read_text(encoding="utf-8", errors="replace"):
        raise BabyLlamaError(f"{path} exists and is not a babyllama model card: not replacing it; move it away or "
                             f"export to another --out")
    path.write_text(text, encoding="utf-8")
    return path


def card_path(out: str | Path) -> Path:
    """README.md in an output folder; NAME.md beside an output file (NAME.gguf, NAME.bin)."""
    out = Path(out)
    return out.with_suffix(".md") if out.suffix in (".gguf", ".bin") else out / "README.md"


def write_export_card(model: str | Path, out: str | Path, format: str, license: Optional[str] = None) -> Path:
    """The card for an export: the model folder it came from describes it, its run record tells its training."""
    from babyllama.modelio import resolve_model_folder

    folder = resolve_model_folder(model)
    run_dir = _run_folder(model) or _run_folder(folder)
    path = card_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write(path, model_card(folder, run_dir, license, (format,)))
