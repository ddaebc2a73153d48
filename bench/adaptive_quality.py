"""Large vocabularies (#35): what the adaptive softmax costs in quality, on WikiText-2.

Trains a word LSTM on wikitext2-valid.txt (every training word kept: min count 1) with the full
softmax, then with `--softmax adaptive` for the same number of steps, then for the full softmax's
wall time; scores wikitext2-test.txt as one stream (`score --continuous`) with each run's best
validation checkpoint, each run validating the whole split at the same steps. Targets: the
adaptive model at equal steps within 3 % of the full softmax's test perplexity, and at equal wall
time no worse. Writes bench/results/adaptive_quality.json.

    python bench/adaptive_quality.py [--steps 1500] [--corpora ../shared/corpora]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, write_results

RECIPE = ["--level", "word", "--cell", "lstm", "--layers", "2", "--hidden", "200", "--embed", "200",
          "--dropout", "0.5", "--seq-len", "35", "--batch-size", "20", "--lr", "2e-3", "--val-fraction", "0.05",
          "--epochs", "1000"]  # the budget is steps or seconds, never epochs


def rnncli(*args) -> str:
    done = subprocess.run([sys.executable, "-m", "rnncli", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return done.stdout


def trained(corpus: Path, test: Path, out: Path, budget: list[str], extra: list[str]) -> dict:
    start = time.perf_counter()
    rnncli("train", corpus, *RECIPE, *budget, *extra, "--out", out, "--quiet")
    seconds = time.perf_counter() - start
    info = json.loads(rnncli("info", out, "--json"))
    best = out.with_suffix(".best.npz")  # the best validation checkpoint, as pytorch/examples keeps its model
    scored = json.loads(rnncli("score", "--model", best if best.exists() else out, "--file", test, "--continuous",
                               "--json"))
    records = [json.loads(line) for line in out.with_suffix(".metrics.jsonl").read_text().splitlines()]
    best_val = min((r for r in records if r.get("val_loss") is not None), key=lambda r: r["val_loss"])
    evaluated = [r["step"] for r in records if r.get("val_loss") is not None]
    row = {"options": " ".join(extra + budget), "seconds": round(seconds, 1), "steps": info["steps"],
           "eval_every": evaluated[0] if evaluated else None,
           "best_val_step": best_val.get("step"), "best_val_loss": round(best_val["val_loss"], 4),
           "tokens_seen": info["tokens_seen"], "train_seconds": round(info["seconds"], 1),
           "vocab": info["vocab_size"], "test_perplexity": round(scored["perplexity"], 3)}
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--corpora", default=str(Path(__file__).resolve().parents[2] / "shared" / "corpora"))
    args = parser.parse_args()
    corpus, test = Path(args.corpora) / "wikitext2-valid.txt", Path(args.corpora) / "wikitext2-test.txt"
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        steps = ["--max-steps", str(args.steps)]
        full = trained(corpus, test, out / "full.npz", steps, [])
        same_steps = trained(corpus, test, out / "adaptive.npz", steps, ["--softmax", "adaptive"])
        # a --max-time run validates on a sample of the split, sized to a share of its budget, and keeps the
        # best checkpoint by it; the runs by steps validate the whole split. So that all three choose their
        # checkpoint alike, the timed run validates the whole split as often as they did (its time counts).
        same_time = trained(corpus, test, out / "adaptive-time.npz",
                            ["--max-time", str(full["train_seconds"]), "--eval-every", str(full["eval_every"])],
                            ["--softmax", "adaptive"])
    result = {"machine": machine(), "recipe": " ".join(RECIPE), "full": full, "adaptive_same_steps": same_steps,
              "adaptive_same_time": same_time,
              "same_steps_change": round(same_steps["test_perplexity"] / full["test_perplexity"] - 1, 4),
              "same_time_change": round(same_time["test_perplexity"] / full["test_perplexity"] - 1, 4)}
    print(json.dumps({k: result[k] for k in ("same_steps_change", "same_time_change")}))
    write_results("adaptive_quality", result)


if __name__ == "__main__":
    main()
