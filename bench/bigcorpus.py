"""Training on a corpus far larger than memory should need (#34's target): a --gb corpus (4 by
default) of many files, a third gzip-compressed (tiny-shakespeare and WikiText-2 repeated), trained
through a token store, against the same model trained on a small corpus: peak RSS within 1 GB of
the small run's, training at the same tokens/s. Also the time to encode the corpus into the store,
and to start again from the store once it exists.

    python bench/bigcorpus.py [--gb 4] [--seconds 40]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, write_results

sys.path.insert(0, str(ROOT))
from encoding import make_corpus  # noqa: E402
from wordlm import find  # noqa: E402

MODEL = ["--level", "char", "--cell", "gru", "--layers", "2", "--hidden", "256", "--seq-len", "64",
         "--batch-size", "32", "--seed", "1"]


def train(args: list[str]) -> dict:
    """One `rnncli train ... --json` run: its summary, peak RSS (MB) and wall time."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "rnncli", "train", *args, "--json"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"train failed:\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    rss_mb = int(done.stderr.strip().splitlines()[-1]) / 1024
    return {"tokens_per_s": round(summary["tokens_per_s"]), "peak_rss_mb": round(rss_mb),
            "wall_s": round(wall, 1), "train_s": round(summary["seconds"], 1), "steps": summary["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=4.0)
    parser.add_argument("--seconds", type=int, default=40)
    args = parser.parse_args()
    results = {"machine": machine(), "model": " ".join(MODEL), "budget_s": args.seconds}
    with tempfile.TemporaryDirectory(prefix="rnncli-big-", dir=ROOT / "bench") as tmp:
        valid = Path(tmp) / "valid.txt"  # small, so that validating costs both runs the same little
        text = find("wikitext2-test.txt").read_bytes()
        valid.write_bytes(text[: text.rfind(b"\n", 0, 64 << 10) + 1])
        budget = ["--max-time", f"{args.seconds}s", "--valid", str(valid)]
        folder = Path(tmp) / "corpus"
        folder.mkdir()
        start = time.perf_counter()
        results["text_bytes"] = make_corpus(folder, args.gb * 1024, files=48, compresslevel=1)
        results["corpus_made_s"] = round(time.perf_counter() - start, 1)
        small = find("tinyshakespeare.txt")
        results["small"] = train([str(small), *MODEL, *budget, "--out", f"{tmp}/small.npz"])
        print("small", results["small"], flush=True)
        store = f"{tmp}/corpus.tokens"
        results["big_first"] = train([str(folder), *MODEL, *budget, "--store", store, "--out", f"{tmp}/big.npz"])
        print("big, making the store", results["big_first"], flush=True)
        results["store_bytes"] = Path(store).stat().st_size
        results["big_again"] = train([str(folder), *MODEL, *budget, "--store", store, "--out", f"{tmp}/big2.npz"])
        print("big, from the store", results["big_again"], flush=True)
    big, small = results["big_again"], results["small"]
    results["rss_above_small_mb"] = big["peak_rss_mb"] - small["peak_rss_mb"]
    results["rss_above_small_first_mb"] = results["big_first"]["peak_rss_mb"] - small["peak_rss_mb"]
    results["speed_vs_small"] = round(big["tokens_per_s"] / small["tokens_per_s"], 3)
    results["encoding_mb_per_s"] = round(results["text_bytes"] / 1e6 / max(
        results["big_first"]["wall_s"] - results["big_again"]["wall_s"], 1e-9), 1)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1))
    print(write_results("bigcorpus", results))


if __name__ == "__main__":
    main()
