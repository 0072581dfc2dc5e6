"""Fine-tuning data: read records from files or the Hub, and bring every format to the one TRL trains on.

SFT formats (detected from the fields of the records; one format per dataset):
    {"messages": [{"role": ..., "content": ...}, ...]}            conversational, kept as is
    {"instruction": ..., "input": ..., "output": ...}             -> user: instruction (+ input), assistant: output
    {"prompt": "...", "completion": "..."}                        -> user: prompt, assistant: completion
    {"text": "..."}  or a .txt file                                plain text: language modelling on every token
DPO formats:
    {"prompt" | "instruction" (+ "input"), "chosen": ..., "rejected": ...}   -> conversational preference pairs
Conversational records go through the tokenizer's chat template, so the role tokens reserved at tokenizer
training time frame every turn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from babyllama.errors import BabyLlamaError

ROLES = ("system", "user", "assistant")


def _read_local(path: Path) -> list[dict]:
    from babyllama.data.sources import read_documents

    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [{"text": doc} for doc in read_documents(path)]
    if suffix == ".jsonl":
        records = []
        with open(path, "rb") as handle:
            for line_no, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise BabyLlamaError(f"{path}, line {line_no}: invalid UTF-8 ({err.reason} at byte {err.start})") \
                        from None
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise BabyLlamaError(f"{path}, line {line_no}: not valid JSON ({err.msg})") from None
                if not isinstance(record, dict):
                    raise BabyLlamaError(f"{path}, line {line_no}: expected a JSON object")
                records.append(record)
        return records
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BabyLlamaError(f"{path}: not a valid UTF-8 JSON file ({err})") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise BabyLlamaError(f"{path}: expected a JSON list of objects")
        return data
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise BabyLlamaError(f"{path}: unsupported file type '{path.suffix}'; use .jsonl, .json, .parquet or .txt")


def _read_hub(name: str, split: str) -> list[dict]:
    """A Hub dataset through `datasets` (its cache first); offline, a clear error instead of a long hang."""
    import datasets

    from babyllama.data.sources import hub_reachable

    try:  # already cached: works offline
        with _offline():
            return list(datasets.load_dataset(name, split=split))
    except Exception:
        pass
    if not hub_reachable():
        raise BabyLlamaError(f"--data {name}: not a local file, and the Hugging Face Hub cannot be reached to "
                             f"download it. Offline, give a local .jsonl/.json/.parquet/.txt file")
    try:
        return list(datasets.load_dataset(name, split=split))
    except Exception as err:
        raise BabyLlamaError(f"loading the Hub dataset {name} (split {split}) failed: {err}") from None


class _offline:
    def __enter__(self):
        import datasets.config
        import os

        self.saved = (os.environ.get("HF_DATASETS_OFFLINE"), datasets.config.HF_HUB_OFFLINE)
        os.environ["HF_DATASETS_OFFLINE"] = "1"
        datasets.config.HF_HUB_OFFLINE = True

    def __exit__(self, *exc):
        import datasets.config
        import os

        if self.saved[0] is None:
            os.environ.pop("HF_DATASETS_OFFLINE", None)
        else:
            os.environ["HF_DATASETS_OFFLINE"] = self.saved[0]
        datasets.config.HF_HUB_OFFLINE = self.saved[1]


def read_records(data: str, split: str = "train") -> list[dict]:
    """Records from a file, a folder / glob of files, or a Hub dataset name."""
    import glob

    path = Path(data)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        from babyllama.pathchecks import check_data_path

        check_data_path(data)  # a run folder holds metrics.jsonl: not training data
        if (path / "manifest.json").is_file() and (path / "train.bin").is_file():
            raise BabyLlamaError(f"--data {data} is a pretraining data folder (from `babyllama prepare`); fine-tuning "
                                 f"reads .jsonl/.json/.parquet/.txt examples")
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".jsonl", ".json", ".parquet", ".txt"))
        if not files:
            raise BabyLlamaError(f"--data {data}: the folder holds no .jsonl/.json/.parquet/.txt file")
    elif any(c in data for c in "*?["):
        files = [Path(p) for p in sorted(glob.glob(data))]
        if not files:
            raise BabyLlamaError(f"--data {data}: the pattern matches no file")
    elif data.count("/") == 1 and not data.startswith((".", "/")) and not path.suffix:
        return _read_hub(data, split)
    else:
        raise BabyLlamaError(f"--data {data}: no such file or folder (a Hub dataset is named like 'owner/name')")
    records = [r for f in files for r in _read_local(f)]
    if not records:
        raise BabyLlamaError(f"--data {data}: no records")
    return records


# --------------------------------------------------------------------------- formats


def _text(record: dict, key: str, where: str) -> str:
    value = record.get(key)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise BabyLlamaError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    return value


def _user_turn(record: dict, where: str) -> str:
    """The question of an instruction record: the instruction, then its input when there is one."""
    if "instruction" in record:
        instruction, extra = _text(record, "instruction", where).strip(), _text(record, "input", where).strip()
        return f"{instruction}\n\n{extra}" if extra else instruction
    return _text(record, "prompt", where).strip()


def _check_messages(messages: Any, where: str) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise BabyLlamaError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    out = []
    for turn in messages:
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise BabyLlamaError(f"{where}: every message needs 'role' and 'content'")
        if turn["role"] not in ROLES:
            raise BabyLlamaError(f"{where}: unknown role '{turn['role']}' (use {', '.join(ROLES)})")
        if not isinstance(turn["content"], str):
            raise BabyLlamaError(f"{where}: message content must be a string")
        out.append({"role": turn["role"], "content": turn["content"]})
    if not any(t["role"] == "assistant" for t in out):
        raise BabyLlamaError(f"{where}: the conversation has no assistant turn, so nothing would be trained")
    return out


def sft_format(record: dict) -> str:
    if "messages" in record:
        return "messages"
    if "instruction" in record and "output" in record:
        return "instruction"
    if "prompt" in record and "completion" in record:
        return "prompt_completion"
    if "text" in record:
        return "text"
    raise BabyLlamaError(f"cannot tell the format of a record with fields {sorted(record)[:8]}: expected "
                         f"'messages', 'instruction'+'output', 'prompt'+'completion' or 'text'")


def to_sft_examples(records: list[dict], system_prompt: Optional[str] = None,
                    log=print) -> tuple[list[dict], str]:
    """(examples, format): conversational {'messages': [...]} or plain {'text': ...}. A conversation whose
    assistant turns are all empty would train only on end-of-turn tokens: it is skipped and counted."""
    kind = sft_format(records[0])
    examples = []
    silent: list[int] = []  # conversations with nothing for the assistant to learn
    for i, record in enumerate(records):
        where = f"record {i}"
        if sft_format(record) != kind:
            raise BabyLlamaError(f"{where} is in the '{sft_format(record)}' format, record 0 in '{kind}'; "
                                 f"one dataset must use one format")
        if kind == "text":
            text = _text(record, "text", where).strip()
            if text:
                examples.append({"text": text})
            continue
        if kind == "messages":
            messages = _check_messages(record["messages"], where)
            if not any(t["content"].strip() for t in messages if t["role"] == "assistant"):
                silent.append(i)
                continue
        else:
            answer = _text(record, "output" if kind == "instruction" else "completion", where).strip()
            question = _user_turn(record, where)
            if not answer or not question:
                raise BabyLlamaError(f"{where}: empty {'question' if not question else 'answer'}")
            messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if system_prompt and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system_prompt}] + messages
        examples.append({"messages": messages})
    if silent:
        shown = ", ".join(map(str, silent[:5])) + (", ..." if len(silent) > 5 else "")
        if not examples:
            raise BabyLlamaError(f"every conversation's assistant turns are empty (records {shown}): there is "
                                 f"nothing to train on; fill in the assistant answers")
        log(f"note: skipped {len(silent)} of {len(records)} conversations whose assistant turns are all empty "
            f"(records {shown})")
    if not examples:
        raise BabyLlamaError("the data holds no non-empty example")
    return examples, ("text" if kind == "text" else "conversational")


def to_preference_examples(records: list[dict], system_prompt: Optional[str] = None) -> tuple[list[dict], int]:
    """(pairs, identical): conversational prompt/chosen/rejected; pairs whose answers are equal teach nothing
    and are dropped (counted)."""
    pairs, identical = [], 0
    for i, record in enumerate(records):
        where = f"record {i}"
        if "chosen" not in record or "rejected" not in record:
            raise BabyLlamaError(f"{where}: a preference record needs 'chosen' and 'rejected' (fields: "
                                 f"{sorted(record)[:8]})")
        chosen, rejected = record["chosen"], record["rejected"]
        if isinstance(chosen, list) and isinstance(rejected, list):  # already conversational
            prompt = _check_messages(record.get("prompt") or [], where) if record.get("prompt") else []
            chosen_text = chosen[-1].get("content") if chosen else None
            rejected_text = rejected[-1].get("content") if rejected else None
        else:
            prompt = [{"role": "user", "content": _user_turn(record, where)}]
            if not prompt[0]["content"]:
                raise BabyLlamaError(f"{where}: no prompt ('prompt' or 'instruction')")
            chosen_text = _text(record, "chosen", where).strip()
            rejected_text = _text(record, "rejected", where).strip()
        if not chosen_text or not rejected_text:
            raise BabyLlamaError(f"{where}: empty chosen or rejected answer")
        if chosen_text == rejected_text:
            identical += 1
            continue
        if system_prompt and (not prompt or prompt[0]["role"] != "system"):
            prompt = [{"role": "system", "content": system_prompt}] + prompt
        pairs.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen_text}],
                      "rejected": [{"role": "assistant", "content": rejected_text}]})
    if not pairs:
        raise BabyLlamaError("the data holds no usable preference pair")
    return pairs, identical


def split_examples(examples: list[dict], eval_size: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A deterministic held-out split: eval_size < 1 is a fraction, >= 1 a count."""
    import random

    if eval_size <= 0:
        return examples, []
    count = int(round(eval_size * len(examples))) if eval_size < 1 else int(eval_size)
    count = max(1, count)
    if count >= len(examples):
        raise BabyLlamaError(f"--eval_size {eval_size} would hold out {count} of {len(examples)} examples, "
                             f"leaving none to train on")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]
