"""Throughput of a job in shards: `rnncli score --file X --per-line -o OUT` over ~100 MB of text, on one
process, on 2 local workers, and on a local Ray cluster with 1 and 2 CPUs; every output checked equal
to the one-process output; Ray's overhead per shard against the local run of the same parallelism.

    python bench/jobs.py [--mb 100] [--model M] [--shard-lines 8192]

Without --model, a small char-level GRU (1 x 128) is trained on corpora/demo.txt first (about 10 s).
The text is tiny-shakespeare (../shared/corpora) repeated, or the demo corpus when that is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, write_results

RNNCLI = [sys.executable, "-m", "rnncli"]
RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def run(args: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run([*RNNCLI, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        sys.exit(f"rnncli {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_text(folder: Path, mb: float) -> Path:
    shared = ROOT.parent / "shared" / "corpora" / "tinyshakespeare.txt"
    source = (shared if shared.exists() else ROOT / "corpora" / "demo.txt").read_bytes()
    path = folder / "text.txt"
    with open(path, "wb") as f:
        while f.tell() < mb * 1e6:
            f.write(source)
    return path


def ray_cluster(cpus: int, temp: str) -> str:
    port = 6400 + cpus
    subprocess.run([*RAY, "get-auth-token", "--generate"], capture_output=True, check=True)
    subprocess.run([*RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", f"--temp-dir={temp}",
                    f"--num-cpus={cpus}", "--include-dashboard=false", "--disable-usage-stats"], capture_output=True,
                   check=True)
    return f"127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0)
    parser.add_argument("--model")
    parser.add_argument("--shard-lines", type=int, default=8192)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rnncli-jobs-"))
    model = args.model
    if model is None:
        model = str(folder / "model.npz")
        run(["train", str(ROOT / "corpora" / "demo.txt"), "--cell", "gru", "--layers", "1", "--hidden", "128",
             "--epochs", "6", "--out", model, "--quiet"])
    text = make_text(folder, args.mb)
    size = text.stat().st_size
    lines = sum(1 for _ in open(text, "rb"))
    shards = -(-lines // args.shard_lines)
    common = ["score", "--model", model, "--file", str(text), "--per-line", "--shard-lines", str(args.shard_lines),
              "--quiet"]
    rows = []

    def measure(label: str, extra: list[str], env: dict | None = None) -> None:
        out = folder / f"{label}.tsv"
        seconds = run([*common, *extra, "-o", str(out)], env)
        rows.append({"run": label, "seconds": seconds, "mb_per_s": size / 1e6 / seconds, "lines_per_s": lines / seconds,
                     "output_sha256": digest(out)})
        out.unlink()
        sys.stderr.write(f"{label:<14}{seconds:8.1f} s  {size / 1e6 / seconds:6.2f} MB/s  "
                         f"{lines / seconds:10,.0f} lines/s\n")

    measure("local 1", [])
    measure("local 2", ["--workers", "2"])
    for cpus in (1, 2):
        temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        address = ray_cluster(cpus, temp)
        try:
            measure(f"ray {cpus} cpu", ["--ray", address], {"RAY_AUTH_MODE": "token"})
        finally:
            subprocess.run([*RAY, "stop", "--force"], capture_output=True)
    same = len({r["output_sha256"] for r in rows}) == 1
    by = {r["run"]: r["seconds"] for r in rows}
    per_shard = {f"ray {n} cpu": (by[f"ray {n} cpu"] - by[f"local {n}"]) / shards for n in (1, 2)}
    work_per_shard = by["local 1"] / shards
    payload = {"benchmark": "jobs", "machine": machine(), "bytes": size, "lines": lines, "shards": shards,
               "shard_lines": args.shard_lines, "rows": rows, "identical_outputs": same,
               "ray_overhead_seconds_per_shard": per_shard,
               "ray_overhead_share_of_shard_work": {k: v / work_per_shard for k, v in per_shard.items()}}
    write_results("jobs", payload)
    print(json.dumps(payload, indent=2))
    sys.stderr.write(f"{shards} shards of {args.shard_lines} lines; outputs identical: {same}; Ray's overhead per "
                     f"shard: " + ", ".join(f"{k} {v:.3f} s ({v / work_per_shard:.1%} of a shard's work)"
                                            for k, v in per_shard.items()) + "\n")


if __name__ == "__main__":
    main()
