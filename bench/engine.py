"""Engine throughput: training step, forward-only scoring and batch-1 generation, per cell family,
at two sizes; with --vs-torch, the same work in PyTorch (2 threads) interleaved in the same run.

    python bench/engine.py [--vs-torch] [--cells rnn,gru,lstm] [--configs small,char-rnn] [--repeats 5]

Prints one JSON document on stdout (also written to bench/results/engine.json) and a table on stderr.
"""

from __future__ import annotations

import json
import statistics
import sys

from common import (
    CONFIGS,
    RnncliModel,
    TorchModel,
    arithmetic_peak,
    bench_parser,
    forward_flops_per_token,
    machine,
    read_bandwidth,
    sgemm_ceiling,
    time_per_call,
    torch_available,
    train_flops_per_token,
    weight_bytes,
    write_results,
)

GEN_TOKENS = {"rnncli": 2000, "torch": 200}


def measure(cell: str, config: str, vs_torch: bool, repeats: int, ceiling: float, peak: float) -> list[dict]:
    cfg = CONFIGS[config]
    ours = RnncliModel(cell, cfg)
    theirs = TorchModel(cell, cfg) if vs_torch else None
    rows = []
    for work in ("train", "score", "generate"):
        samples = {"rnncli": [], "torch": []}
        for _ in range(repeats):  # interleaved, so drift of the machine hits both alike
            for name, m in (("rnncli", ours), ("torch", theirs)):
                if m is None:
                    continue
                if work == "generate":
                    n = GEN_TOKENS[name]
                    samples[name].append(n / time_per_call(lambda m=m, n=n: m.generate(n)))
                else:
                    fn = m.train_step if work == "train" else m.score
                    samples[name].append(m.tokens / time_per_call(fn))
        row = {"cell": cell, "config": config, "work": work,
               "rnncli_tokens_per_s": statistics.median(samples["rnncli"])}
        if work != "generate":
            flops = train_flops_per_token(cell, cfg) if work == "train" else forward_flops_per_token(cell, cfg)
            row["gflops"] = row["rnncli_tokens_per_s"] * flops / 1e9
            row["fraction_of_ceiling"] = row["gflops"] / ceiling
            row["fraction_of_peak"] = row["gflops"] / peak
        else:  # batch 1: every token streams all the weights; the bound is how fast both cores can read them
            nbytes = weight_bytes(ours)
            row["bound_tokens_per_s"] = read_bandwidth(nbytes) / nbytes
            row["fraction_of_bound"] = row["rnncli_tokens_per_s"] / row["bound_tokens_per_s"]
        if samples["torch"]:
            row["torch_tokens_per_s"] = statistics.median(samples["torch"])
            row["ratio"] = row["rnncli_tokens_per_s"] / row["torch_tokens_per_s"]
            if "gflops" in row:  # where the reference stands against the same peak
                row["torch_fraction_of_peak"] = row["fraction_of_peak"] / row["ratio"]
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    out = sys.stderr
    out.write(f"{'cell':<14}{'config':<10}{'work':<10}{'rnncli tok/s':>14}{'torch tok/s':>13}{'ratio':>8}"
              f"{'GFLOP/s':>9}{'ceiling':>9}{'peak':>7}{'torch':>7}\n")
    for r in rows:
        torch_rate = f"{r['torch_tokens_per_s']:,.0f}" if "torch_tokens_per_s" in r else "-"
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else "-"
        gflops = f"{r['gflops']:.0f}" if "gflops" in r else "-"
        share = r.get("fraction_of_ceiling", r.get("fraction_of_bound"))
        frac = f"{share:.0%}" if share is not None else "-"
        peak = f"{r['fraction_of_peak']:.0%}" if "fraction_of_peak" in r else "-"
        theirs = f"{r['torch_fraction_of_peak']:.0%}" if "torch_fraction_of_peak" in r else "-"
        out.write(f"{r['cell']:<14}{r['config']:<10}{r['work']:<10}{r['rnncli_tokens_per_s']:>14,.0f}"
                  f"{torch_rate:>13}{ratio:>8}{gflops:>9}{frac:>9}{peak:>7}{theirs:>7}\n")


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--cells", default="rnn,gru,gru-cudnn,lstm")
    parser.add_argument("--configs", default="small,char-rnn")
    args = parser.parse_args()
    vs_torch = args.vs_torch and torch_available()
    if args.vs_torch and not vs_torch:
        sys.stderr.write("PyTorch is not installed (make torch); measuring rnncli only\n")
    ceiling, peak = sgemm_ceiling(), arithmetic_peak()
    sys.stderr.write(f"this machine's large sgemm: {ceiling:.0f} GFLOP/s (2048^3, numpy's BLAS), its arithmetic peak "
                     f"{peak:.0f} GFLOP/s (fused multiply-adds only, both cores). 'ceiling': each row's share of the "
                     "sgemm rate, for generation its share of the weight-streaming bound; 'peak' and 'torch': "
                     "rnncli's and PyTorch's share of the peak\n")
    rows = []
    for config in args.configs.split(","):
        for cell in args.cells.split(","):
            rows.extend(measure(cell, config, vs_torch, args.repeats, ceiling, peak))
    payload = {"benchmark": "engine", "machine": {**machine(), "sgemm_gflops": ceiling, "peak_gflops": peak},
               "vs_torch": vs_torch,
               "rows": rows}
    write_results("engine-vs-torch" if vs_torch else "engine", payload)
    print(json.dumps(payload, indent=2))
    print_table(rows)


if __name__ == "__main__":
    main()
