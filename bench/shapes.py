"""Every batch shape users train with (#37): a grid of batch x steps for the lstm, gru-cudnn and rnn
at the char-rnn (2 x 512) and small (1 x 128) sizes (embedding 64, vocabulary 65), plus
pytorch/examples' word model (lstm 2 x 200, embedding 200, vocabulary 10,000) at its 20 x 35:
training step and scoring, rnncli and PyTorch (2 threads) interleaved, tokens/s and their ratio.

Each figure is the fastest of many calls (noise on a shared host only adds time), taken in three
rounds that alternate the two tools. Writes bench/results/shapes.json and, when matplotlib is
installed, bench/results/shapes.png (a heat map of the ratios).

    python bench/shapes.py [--cells lstm,gru-cudnn,rnn] [--sizes char-rnn,small] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import time

from common import CONFIGS, ROOT, RnncliModel, TorchModel, machine, write_results

BATCHES = (8, 20, 32, 50, 64, 128)
STEPS = (35, 50, 100)
WORD_MODEL = {"layers": 2, "hidden": 200, "embed": 200, "batch": 20, "seq": 35}


def fastest(fn, seconds: float = 0.3) -> float:
    """The fastest of as many calls as fill about `seconds` (at least two), after a warm-up call."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    best = first
    for _ in range(max(2, int(seconds / max(first, 1e-6)))):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(cell: str, cfg: dict, V: int, rounds: int) -> dict:
    ours, theirs = RnncliModel(cell, cfg, V), TorchModel(cell, cfg, V)
    row = {}
    for work in ("train_step", "score"):
        a, b = 1e9, 1e9
        for _ in range(rounds):  # the two tools alternate, so that the host's drift hits both alike
            a = min(a, fastest(getattr(ours, work)))
            b = min(b, fastest(getattr(theirs, work)))
        name = "train" if work == "train_step" else "score"
        row[name] = {"rnncli": round(ours.tokens / a), "torch": round(theirs.tokens / b), "ratio": round(b / a, 3)}
    return row


def heat_map(results: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = [(key, work) for key in results["grid"] for work in ("train", "score")]
    fig, axes = plt.subplots(len(panels) // 2, 2, figsize=(9, 2.2 * len(panels) // 2), squeeze=False)
    for ax, (key, work) in zip(axes.flat, panels, strict=True):
        grid = np.array([[results["grid"][key][f"{b}x{t}"][work]["ratio"] for b in BATCHES] for t in STEPS])
        ax.imshow(grid, cmap="RdYlGn", vmin=0.5, vmax=2.0, aspect="auto")
        ax.set_xticks(range(len(BATCHES)), [str(b) for b in BATCHES])
        ax.set_yticks(range(len(STEPS)), [str(t) for t in STEPS])
        ax.set_title(f"{key} {work}: rnncli / PyTorch", fontsize=9)
        ax.set_xlabel("batch", fontsize=8)
        ax.set_ylabel("steps", fontsize=8)
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="lstm,gru-cudnn,rnn")
    parser.add_argument("--sizes", default="char-rnn,small")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    results = {"machine": machine(), "batches": BATCHES, "steps": STEPS, "grid": {}}
    for size in args.sizes.split(","):
        for cell in args.cells.split(","):
            key = f"{cell} {size}"
            results["grid"][key] = {}
            for T in STEPS:
                for B in BATCHES:
                    cfg = {**CONFIGS[size], "batch": B, "seq": T}
                    row = measure(cell, cfg, 65, args.rounds)
                    results["grid"][key][f"{B}x{T}"] = row
                    print(key, f"{B}x{T}", json.dumps(row), flush=True)
    results["word model 20x35"] = measure("lstm", WORD_MODEL, 10_000, args.rounds)
    print("word model", json.dumps(results["word model 20x35"]), flush=True)
    path = write_results("shapes", results)
    try:
        heat_map(results, ROOT / "bench" / "results" / "shapes.png")
    except ImportError:
        print("matplotlib is not installed: no heat map (pip install 'rnncli[plot]')")
    print(path)


if __name__ == "__main__":
    main()
