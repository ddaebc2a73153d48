"""Process-level figures: start-up, peak memory and the use of both cores.

- start-up: `rnncli --help`; `rnncli sample --length 200` on a char-rnn-size model (2 x 512 lstm),
  end to end as a process, with a warm Numba cache and with a cold one (a fresh NUMBA_CACHE_DIR, as
  after a fresh install); `python -c "import torch"` for comparison.
- memory: peak RSS of a process that runs char-rnn-size lstm training steps, rnncli and PyTorch.
- threads: the training step's tokens/s with one BLAS thread and with two.

    python bench/process.py [--vs-torch] [--repeats 5]

Prints one JSON document on stdout (also written to bench/results/process.json) and a table on stderr.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, bench_parser, machine, torch_available, write_results

BENCH = Path(__file__).resolve().parent
RNNCLI = [sys.executable, "-m", "rnncli"]

# Runs in a child process: N training steps of the engine benchmark's model, then prints tokens/s.
TRAIN_STEPS = """
import sys, time
sys.path.insert(0, {bench!r})
from common import CONFIGS, {cls}
m = {cls}("lstm", CONFIGS["char-rnn"])
m.train_step()
start = time.perf_counter()
for _ in range({steps}):
    m.train_step()
print(m.tokens * {steps} / (time.perf_counter() - start))
"""

# Runs a command as its only child and prints that child's peak RSS in MB.
PEAK_RSS = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""


def seconds(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def make_model(folder: Path) -> Path:
    """A char-rnn-size lstm checkpoint (a few training steps on the shipped demo corpus)."""
    path = folder / "lstm-2x512.npz"
    subprocess.run([*RNNCLI, "train", str(ROOT / "corpora" / "demo.txt"), "--cell", "lstm", "--layers", "2",
                    "--hidden", "512", "--max-steps", "2", "--out", str(path), "--quiet"], check=True)
    return path


def startup(repeats: int, vs_torch: bool, folder: Path) -> dict:
    model = make_model(folder)
    sample = [*RNNCLI, "sample", "--model", str(model), "--length", "200", "--seed", "1"]
    cold_env = {**os.environ, "NUMBA_CACHE_DIR": str(folder / "numba-cache")}
    row = {"cold_sample_s": seconds(sample, cold_env)}  # compiles what sampling needs, then caches it
    row["warm_sample_s"] = statistics.median(seconds(sample) for _ in range(repeats))
    row["help_s"] = statistics.median(seconds([*RNNCLI, "--help"]) for _ in range(repeats))
    if vs_torch:
        row["import_torch_s"] = statistics.median(seconds([sys.executable, "-c", "import torch"])
                                                  for _ in range(repeats))
    return row


def train_child(cls: str, steps: int) -> list[str]:
    return [sys.executable, "-c", TRAIN_STEPS.format(bench=str(BENCH), cls=cls, steps=steps)]


def memory(vs_torch: bool) -> dict:
    row = {}
    for name, cls in (("rnncli", "RnncliModel"), ("torch", "TorchModel")):
        if name == "torch" and not vs_torch:
            continue
        out = subprocess.run([sys.executable, "-c", PEAK_RSS, *train_child(cls, 3)], check=True,
                             capture_output=True, text=True).stdout
        row[f"{name}_peak_rss_mb"] = float(out.strip())
    return row


def threads(repeats: int) -> dict:
    rates = {}
    for n in (1, 2):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": str(n), "OMP_NUM_THREADS": str(n)}
        runs = [float(subprocess.run(train_child("RnncliModel", 3), check=True, capture_output=True, text=True,
                                     env=env).stdout) for _ in range(repeats)]
        rates[n] = statistics.median(runs)
    return {"train_tokens_per_s_1_thread": rates[1], "train_tokens_per_s_2_threads": rates[2],
            "speedup_2_threads": rates[2] / rates[1]}


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    vs_torch = args.vs_torch and torch_available()
    with tempfile.TemporaryDirectory() as tmp:
        result = {"machine": machine(), "startup": startup(args.repeats, vs_torch, Path(tmp)),
                  "memory": memory(vs_torch), "threads": threads(max(3, args.repeats // 2))}
    write_results("process", result)
    print(json.dumps(result, indent=2))
    s, m, t = result["startup"], result["memory"], result["threads"]
    lines = [f"rnncli --help                         {s['help_s']:.2f} s",
             f"rnncli sample --length 200, warm      {s['warm_sample_s']:.2f} s",
             f"rnncli sample --length 200, cold      {s['cold_sample_s']:.2f} s"]
    if "import_torch_s" in s:
        lines.append(f"python -c 'import torch'              {s['import_torch_s']:.2f} s")
    lines.append(f"peak RSS, lstm char-rnn training      rnncli {m['rnncli_peak_rss_mb']:.0f} MB"
                 + (f", PyTorch {m['torch_peak_rss_mb']:.0f} MB" if "torch_peak_rss_mb" in m else ""))
    lines.append(f"train step 1 -> 2 threads             {t['train_tokens_per_s_1_thread']:,.0f} -> "
                 f"{t['train_tokens_per_s_2_threads']:,.0f} tokens/s ({t['speedup_2_threads']:.2f}x)")
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    main()
