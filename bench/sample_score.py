"""Generation and scoring throughput for a 2-layer 512 lstm and gru (the char-rnn size):
batch-1 generation at temperature 0.8, and forward-only scoring at batch 32 x 100 steps; with
--vs-torch the usual PyTorch equivalents (a Python sampling loop; forward under torch.no_grad).

    python bench/sample_score.py [--vs-torch] [--repeats 5]
"""

from __future__ import annotations

import json
import statistics
import sys

from common import (
    CONFIGS,
    RnncliModel,
    TorchModel,
    bench_parser,
    machine,
    time_per_call,
    torch_available,
    write_results,
)


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    vs_torch = args.vs_torch and torch_available()
    cfg = CONFIGS["char-rnn"]
    rows = []
    for cell in ("lstm", "gru"):
        ours = RnncliModel(cell, cfg)
        theirs = TorchModel(cell, cfg) if vs_torch else None
        for work in ("generate", "score"):
            rates = {"rnncli": [], "torch": []}
            for _ in range(args.repeats):
                for name, m in (("rnncli", ours), ("torch", theirs)):
                    if m is None:
                        continue
                    if work == "generate":
                        n = 2000 if name == "rnncli" else 200
                        rates[name].append(n / time_per_call(lambda m=m, n=n: m.generate(n)))
                    else:
                        rates[name].append(m.tokens / time_per_call(m.score))
            row = {"cell": cell, "work": work, "rnncli_tokens_per_s": statistics.median(rates["rnncli"])}
            if rates["torch"]:
                row["torch_tokens_per_s"] = statistics.median(rates["torch"])
                row["ratio"] = row["rnncli_tokens_per_s"] / row["torch_tokens_per_s"]
            rows.append(row)
    payload = {"benchmark": "sample_score", "machine": machine(), "vs_torch": vs_torch, "rows": rows}
    write_results("sample_score-vs-torch" if vs_torch else "sample_score", payload)
    print(json.dumps(payload, indent=2))
    for r in rows:
        extra = f"  torch {r['torch_tokens_per_s']:>10,.0f}  ratio {r['ratio']:.2f}" if "ratio" in r else ""
        sys.stderr.write(f"{r['cell']:<6}{r['work']:<10}rnncli {r['rnncli_tokens_per_s']:>10,.0f}{extra}\n")


if __name__ == "__main__":
    main()
