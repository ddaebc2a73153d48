"""Compile ahead, at install, what a first run needs: every cell's generation kernels, and the
training kernels of the cells a first `train` most likely uses.

`make install` runs this (`python -m rnncli.execution.precompile`): Numba compiles a kernel on its first call
and caches it beside its source; a cached one loads in ~0.3 s. A tiny model of each cell, float32,
is enough: the compiled code depends on the cell and the number types, not on the sizes.

- Generation, every cell: its kernel in two forms, packed weights on one core and packed weights
  shared with a helper on the second core (kernels/two_cores.py), each with and without top-k/top-p,
  and, for the cells of `TRAINED_AHEAD`, the same two forms of a quantized model's int8 steps
  (kernels/int8.py);
  a beam's step (run from Python) in both forms, and the beam's choice (`beam_candidates`).
- Training: a step of the cells a first run trains (`TRAINED_AHEAD`: the demo's gru, the default
  lstm, and gru-cudnn, which `--max-time` picks), forward and backward by the per-token table (a
  character model) and by the embedding (a word model), in shards of rows, with the optimizer.

The jobs run in one process per core, each its share of the cells (Numba writes each cache file
whole, by a rename, so two processes compiling a shared helper do not clash).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

TRAINED_AHEAD = ("gru", "lstm", "gru-cudnn")


def compile_generation(cell: str) -> None:
    from rnncli.config import ModelConfig
    from rnncli.formats import int8
    from rnncli.kernels.generate import generate, model_step
    from rnncli.kernels.int8 import Int8Steps
    from rnncli.kernels.two_cores import new_mailbox
    from rnncli.models.model import Model

    model = Model(ModelConfig(cell=cell, vocab_size=4, embed=2, hidden=2, layers=1))
    params = model.init_params(np.random.default_rng(0), np.float32)
    pairs = int8.quantize_params(params, "row")
    quantized = {**params, **{name: int8.dequantized(name, *pair, "row") for name, pair in pairs.items()}}
    forms = [(True, params), (new_mailbox(), params)]
    if cell in TRAINED_AHEAD:  # a quantized model's int8 steps: the likeliest cells (~10 s each)
        forms += [(Int8Steps("row"), quantized), (Int8Steps("row", new_mailbox()), quantized)]
    h, c = model.step_state(model.initial_state(1))
    out, logprobs, finished = np.empty((1, 1), np.int64), np.empty((1, 1)), np.zeros(1, np.bool_)
    # the mailbox's products computed whole here (no helper runs); a quantized model's int8 steps too
    for packed, values in forms:
        weights = model.step_weights(values, packed)
        for top_k, top_p in ((0, 1.0), (2, 0.9)):
            generate(*weights, h, c, np.array([[1]]), np.zeros((1, 1)), np.ones(1), np.array([top_k]),
                     np.array([top_p]), False, finished, out, logprobs)
        model_step(*weights, np.array([1]), h, c)  # a beam's step


def compile_training(cell: str) -> None:
    from rnncli.config import ModelConfig
    from rnncli.models.model import Model
    from rnncli.training.optim import Optimizer

    rng = np.random.default_rng(0)
    for vocab in (4, 64):  # below T*B: the per-token input table; above: the embedding
        model = Model(ModelConfig(cell=cell, vocab_size=vocab, embed=3, hidden=4, layers=2))
        params = model.init_params(rng, np.float32)
        T, B = 3, 4  # two shards of two rows where two cores run
        inputs = rng.integers(0, vocab, (T, B)).astype(np.int32)  # a corpus's ids are int32 (text/data.py)
        targets = rng.integers(0, vocab, (T, B)).astype(np.int32)
        loss, _, cache = model.forward(params, inputs, targets, model.initial_state(B))
        grads = model.backward(params, cache)
        Optimizer("adam", params, lr=1e-3, clip=5.0).step(params, grads)
        model.logprobs(params, inputs, targets, model.initial_state(B))


def run_jobs(jobs: list[tuple[str, str]]) -> None:
    from rnncli.kernels.generate import beam_candidates
    from rnncli.kernels.two_cores import compile_helper

    for kind, cell in jobs:
        (compile_generation if kind == "generate" else compile_training)(cell)
    if ("generate", "lstm") in jobs:  # once, in one of the processes
        beam_candidates(np.zeros((1, 4), np.float32), np.zeros(1), 1, True)
        compile_helper(np.float32)


def all_jobs() -> list[tuple[str, str]]:
    from rnncli.kernels.cells import CELL_NAMES

    return [("train", cell) for cell in TRAINED_AHEAD] + [("generate", cell) for cell in CELL_NAMES]


def main() -> None:
    start = time.monotonic()
    jobs = all_jobs()
    if len(sys.argv) > 1:  # one process's share: the job numbers given
        run_jobs([jobs[int(i)] for i in sys.argv[1:]])
        return
    import subprocess

    cores = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
                       4))
    shares = [[str(i) for i in range(k, len(jobs), cores)] for k in range(cores)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}  # one core per process
    command = [sys.executable, "-m", "rnncli.execution.precompile"]
    workers = [subprocess.Popen([*command, *share], env=env) for share in shares]
    failed = [w.wait() for w in workers]
    if any(failed):
        sys.exit("precompiling failed (rnncli still works: its kernels then compile on first use)")
    sys.stderr.write(f"compiled the generation kernels of {len(jobs) - len(TRAINED_AHEAD)} cells and the training "
                     f"kernels of {', '.join(TRAINED_AHEAD)} in {time.monotonic() - start:.0f} s "
                     f"({cores} processes)\n")


if __name__ == "__main__":
    main()
