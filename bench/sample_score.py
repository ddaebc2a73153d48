"""Generation and scoring throughput for a 2-layer 512 lstm and gru (the char-rnn size):
batch-1 generation at temperature 0.8, forward-only scoring at batch 32 x 100 steps; with
--vs-torch the usual PyTorch equivalents (a Python sampling loop; forward under torch.no_grad).
Then rnncli alone: 64 samples generated side by side (`sample -n 64`) and a beam of 64, in tokens
per second over all rows, with their ratio to batch-1 generation and their share of the machine's
compute bound (its large-sgemm rate over the products' FLOPs per token: at 64 rows a step is
products of 64 rows, no longer a stream of the weights).

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
    forward_flops_per_token,
    machine,
    sgemm_ceiling,
    time_per_call,
    torch_available,
    write_results,
)


def side_by_side(cell: str, cfg: dict, repeats: int, ceiling: float, rows: list[dict]) -> list[dict]:
    """64 samples side by side and a beam of 64, against this cell's batch-1 generation row."""
    import numpy as np

    from rnncli.config import SampleConfig
    from rnncli.inference.sample import beam_search_nbest
    from rnncli.text.tokenizers import EOS

    m = RnncliModel(cell, cfg)
    batch1 = next(r["rnncli_tokens_per_s"] for r in rows if r["cell"] == cell and r["work"] == "generate")
    bound = ceiling * 1e9 / forward_flops_per_token(cell, cfg)
    steps = 100
    beam = SampleConfig(length=steps, beam=64)

    def run_beam() -> None:
        beam_search_nbest(m.model, m.params, m.model.initial_state(1), np.array([EOS]), beam)

    out = []
    for work, fn in (("generate x64", lambda: m.generate(steps, batch=64)), ("beam 64", run_beam)):
        rate = statistics.median(64 * steps / time_per_call(fn) for _ in range(repeats))
        out.append({"cell": cell, "work": work, "rnncli_tokens_per_s": rate, "times_batch_1": rate / batch1,
                    "compute_bound_tokens_per_s": bound, "fraction_of_bound": rate / bound})
    return out


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
    ceiling = sgemm_ceiling()
    for cell in ("lstm", "gru"):
        rows.extend(side_by_side(cell, cfg, args.repeats, ceiling, rows))
    payload = {"benchmark": "sample_score", "machine": {**machine(), "sgemm_gflops": ceiling}, "vs_torch": vs_torch,
               "rows": rows}
    write_results("sample_score-vs-torch" if vs_torch else "sample_score", payload)
    print(json.dumps(payload, indent=2))
    sys.stderr.write(f"this machine's large sgemm: {ceiling:.0f} GFLOP/s\n")
    for r in rows:
        extra = f"  torch {r['torch_tokens_per_s']:>10,.0f}  ratio {r['ratio']:.2f}" if "ratio" in r else ""
        if "times_batch_1" in r:
            extra = f"  {r['times_batch_1']:.1f}x batch 1, {r['fraction_of_bound']:.0%} of the compute bound"
        sys.stderr.write(f"{r['cell']:<6}{r['work']:<14}rnncli {r['rnncli_tokens_per_s']:>10,.0f}{extra}\n")


if __name__ == "__main__":
    main()
