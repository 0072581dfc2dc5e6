"""babyllama prepare: corpus -> tokenizer -> pretokenized shards."""

from pathlib import Path

from babyllama.commands.common import add_config_flag, explicit_values
from babyllama.config import add_dataclass_args
from babyllama.data.prepare import PrepareConfig, default_out, prepare
from babyllama.errors import BabyLlamaError

HELP = "get a corpus, train a tokenizer on it and pretokenize it into shards"

# What prepare writes into --out (and may therefore replace there); anything else is the user's.
OUTPUT_NAMES = ("train.bin", "valid.bin", "train.idx.npy", "valid.idx.npy", "tokenizer", "manifest.json")


def add_arguments(parser):
    add_config_flag(parser)
    add_dataclass_args(parser, PrepareConfig, "data preparation")


def check_paths(cfg: PrepareConfig) -> None:
    """Before reading the corpus: --data is a corpus, and --out is ours to write and none of the inputs."""
    from babyllama.pathchecks import check_data_path, check_not_input, check_writable_dir, folder_kind

    check_data_path(cfg.data)
    if folder_kind(cfg.data) == "data":
        raise BabyLlamaError(f"--data {cfg.data} is already a prepared data folder; train on it with "
                             f"`babyllama pretrain --data {cfg.data}` (prepare reads a corpus: .txt/.jsonl/.parquet)")
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    check_not_input("--out", out, {"--data": cfg.data, "--tokenizer": None})
    if out.exists() and not out.is_dir():
        raise BabyLlamaError(f"--out {out} is a file; prepare writes a folder: choose another --out")
    kind = folder_kind(out)
    if kind in ("run", "run-model", "export"):
        raise BabyLlamaError(f"--out {out} is a {'run' if kind == 'run' else 'model'} folder; prepared data never "
                             f"replaces it: choose another --out")
    if out.is_dir() and kind != "data":
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_NAMES and
                         not p.name.startswith(".prepare-"))
        if foreign:
            raise BabyLlamaError(f"--out {out} is a folder of other files ({', '.join(foreign[:3])}"
                                 f"{', ...' if len(foreign) > 3 else ''}), not a prepared data folder; choose "
                                 f"another (new or empty) --out")
    check_writable_dir("--out", out)


def run(args) -> int:
    (values,) = explicit_values(args, PrepareConfig)
    cfg = PrepareConfig(**values)
    check_paths(cfg)
    prepare(cfg)
    return 0
