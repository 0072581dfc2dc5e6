"""How fast does `babyllama prepare` tokenize, against Hugging Face `tokenizers` in the same run?

Builds a corpus of --mb megabytes by repeating the shared TinyStories sample (in a temporary folder, deleted
afterwards), trains one tokenizer on the sample (not timed), then times, each in its own child process:

    baseline   `tokenizers` encode_batch over the corpus in batches of 2048 documents, pinned to one thread
               (RAYON_NUM_THREADS=1), tokens counted and dropped: the tokenizer's own speed, nothing written
    prepare    `babyllama prepare --tokenizer <that tokenizer> --num_proc N` for each N in --workers: the whole
               command, end to end (reading, encoding, writing shards and offsets)

and prints MB/s, tokens/s, peak memory (resident set of the process and all its children together, sampled every
50 ms, and the largest single process) and the ratio to the baseline. Results go to bench/results/prepare-*.json.

    python bench/prepare.py --mb 200 --workers 1,2          # the issue's table on a 2-core machine
    python bench/prepare.py --mb 2                           # a quick check that it runs
    python bench/prepare.py --mb 2000 --workers 2 --skip_baseline --train_tokenizer   # a new 2 GB corpus
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

BASELINE = r"""
import sys, time
from tokenizers import Tokenizer
sys.path.insert(0, sys.argv[3])
from babyllama.data.sources import read_documents
from pathlib import Path
tokenizer = Tokenizer.from_file(sys.argv[1])
tokens, batch = 0, []
for doc in read_documents(Path(sys.argv[2])):
    batch.append(doc)
    if len(batch) == 2048:
        tokens += sum(len(e.ids) + 2 for e in tokenizer.encode_batch(batch, add_special_tokens=False))
        batch = []
if batch:
    tokens += sum(len(e.ids) + 2 for e in tokenizer.encode_batch(batch, add_special_tokens=False))
print(tokens)
"""


def build_corpus(source: Path, megabytes: float, folder: Path) -> Path:
    """<folder>/train.txt of about `megabytes` MB (whole stories): the shared stories, repeated."""
    separator = b"\n<|endoftext|>\n"
    piece = source.read_text(encoding="utf-8").strip().encode("utf-8") + separator
    target = int(megabytes * 1_000_000)
    folder.mkdir(parents=True)
    path = folder / "train.txt"
    with open(path, "wb") as out:
        written = 0
        while written + len(piece) <= target:
            out.write(piece)
            written += len(piece)
        rest = piece[:target - written]
        out.write(rest[:rest.rfind(separator) + len(separator)] if separator in rest else b"")
    shutil.copy(source.with_name("valid.txt"), folder / "valid.txt")
    return path


def run_measured(command: list[str], env: dict) -> dict:
    """Run a command; wall time and peak resident memory of its whole process tree (sampled) and largest process."""
    import psutil

    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(child.pid)
    peak_tree = peak_one = 0
    while child.poll() is None:
        try:
            rss = [p.memory_info().rss for p in [root] + root.children(recursive=True)]
            peak_tree, peak_one = max(peak_tree, sum(rss)), max(peak_one, max(rss))
        except psutil.Error:
            pass
        time.sleep(0.05)
    stdout, stderr = child.communicate()
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return {"seconds": seconds, "peak_tree_mb": peak_tree / 1e6, "peak_process_mb": peak_one / 1e6,
            "stdout": stdout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=200, help="corpus size in MB")
    parser.add_argument("--workers", default=f"1,{os.cpu_count()}", help="comma-separated --num_proc values")
    parser.add_argument("--vocab_size", type=int, default=2048)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "tinystories" / "train.txt"))
    parser.add_argument("--results", default=str(REPO / "bench" / "results"))
    parser.add_argument("--skip_baseline", action="store_true")
    parser.add_argument("--keep_corpus", default=None,
                        help="also copy the built corpus (train.txt, valid.txt) into this folder, e.g. for a kill test")
    parser.add_argument("--train_tokenizer", action="store_true",
                        help="prepare trains its own tokenizer (on its spread sample) instead of reusing one: "
                             "the whole cost of preparing a new corpus")
    args = parser.parse_args()

    from babyllama.data.sources import read_documents
    from babyllama.data.tokenizer import train_tokenizer

    workers = sorted({int(w) for w in args.workers.split(",")})
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    results: dict = {"mb": args.mb, "vocab_size": args.vocab_size, "cpus": os.cpu_count(),
                     "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
                     "runs": {}}
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        tmp = Path(tmp)
        corpus = build_corpus(Path(args.data), args.mb, tmp / "corpus")
        corpus_bytes = corpus.stat().st_size + (tmp / "corpus" / "valid.txt").stat().st_size
        if args.keep_corpus:
            shutil.copytree(tmp / "corpus", args.keep_corpus, dirs_exist_ok=True)
        tokenizer = train_tokenizer(read_documents(Path(args.data)), args.vocab_size, show_progress=False)
        tokenizer.save(tmp / "tokenizer")
        print(f"corpus {corpus_bytes / 1e6:.1f} MB in {corpus.parent}; tokenizer {args.vocab_size} tokens")

        if not args.skip_baseline:
            measured = run_measured([sys.executable, "-c", BASELINE, str(tmp / "tokenizer" / "tokenizer.json"),
                                     str(corpus), str(REPO / "src")], env)
            measured["tokens"] = int(measured.pop("stdout").strip())
            measured["bytes"] = corpus.stat().st_size
            results["runs"]["tokenizers encode_batch, 1 thread"] = measured

        for n in workers:
            out = tmp / f"out-{n}"
            tokenizer_args = (["--vocab_size", str(args.vocab_size)] if args.train_tokenizer else
                              ["--tokenizer", str(tmp / "tokenizer")])
            measured = run_measured([sys.executable, "-m", "babyllama", "prepare", "--data", str(tmp / "corpus"),
                                     *tokenizer_args, "--out", str(out), "--num_proc", str(n), "--disable_tqdm"], env)
            manifest = json.loads((out / "manifest.json").read_text())
            measured.pop("stdout")
            measured["tokens"] = sum(s["tokens"] for s in manifest["splits"].values())
            measured["bytes"] = corpus_bytes
            measured["encoder"] = manifest["encoder"]["kind"]
            measured["manifest_seconds"] = manifest["seconds"]  # tokenizer training / encoding / total
            results["runs"][f"babyllama prepare, {n} worker{'s' if n > 1 else ''}"] = measured
            shutil.rmtree(out)

    baseline = results["runs"].get("tokenizers encode_batch, 1 thread")
    print(f"\n{'':44} {'MB/s':>8} {'tokens/s':>12} {'peak MB (tree)':>15} {'peak MB (1 proc)':>17} {'x baseline':>11}")
    for name, r in results["runs"].items():
        r["mb_per_s"] = r["bytes"] / 1e6 / r["seconds"]
        r["tokens_per_s"] = r["tokens"] / r["seconds"]
        r["ratio"] = r["mb_per_s"] / baseline["mb_per_s"] if baseline else None
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        print(f"{name:44} {r['mb_per_s']:8.2f} {r['tokens_per_s']:12,.0f} {r['peak_tree_mb']:15.0f} "
              f"{r['peak_process_mb']:17.0f} {ratio:>11}")
    folder = Path(args.results)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"prepare-{args.mb:g}mb-{os.cpu_count()}cpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
