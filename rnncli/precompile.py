"""Compile the generation kernels of every cell once, ahead of the first `rnncli sample`.

`make install` runs this (`python -m rnncli.precompile`): Numba compiles a kernel on its first
call and caches it beside its source. A cold generation kernel takes 7-11 s to compile for one
cell, all seven in their three forms and the beam's kernels (below) ~90 s together (measured on 2
cores, AMD EPYC: 88 s; 47 s before beams and a few samples shared their products with the helper),
where a cached one loads in ~0.3 s.
A tiny model of each cell, float32, is enough: the compiled code depends on the cell and the
dtype, not on the sizes or the number of layers. Each cell's kernel comes in three forms: with plain
weights (a small model's few samples; one sample on a cold cache), with packed ones (many samples
at once, `sample -n`), and packed and shared with a helper on the second core (a few samples,
kernels/two_cores.py). A beam search runs the model's step from Python, in the same three forms,
and its choice of candidates in a kernel of its own (`beam_candidates`): compiled here too.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def main() -> None:
    from rnncli.config import ModelConfig
    from rnncli.kernels.cells import CELL_NAMES
    from rnncli.kernels.generate import beam_candidates, generate, model_step
    from rnncli.kernels.two_cores import compile_helper, new_mailbox
    from rnncli.model import Model

    start = time.monotonic()
    for name in CELL_NAMES:
        model = Model(ModelConfig(cell=name, vocab_size=4, embed=2, hidden=2, layers=1))
        params = model.init_params(np.random.default_rng(0), np.float32)
        h, c = model.step_state(model.initial_state(1))
        out, logprobs, finished = np.empty((1, 1), np.int64), np.empty((1, 1)), np.zeros(1, np.bool_)
        for packed in (False, True, new_mailbox()):  # the last one computed whole here (no helper runs)
            weights = model.step_weights(params, packed)
            for top_k, top_p in ((0, 1.0), (2, 0.9)):
                generate(*weights, h, c, np.array([[1]]), np.zeros((1, 1)), 1.0, top_k, top_p, False, finished, out,
                         logprobs)
            model_step(*weights, np.array([1]), h, c)  # a beam's step
    beam_candidates(np.zeros((1, 4), np.float32), np.zeros(1), 1, True)
    compile_helper(np.float32)
    seconds = time.monotonic() - start
    sys.stderr.write(f"compiled the generation kernels of {len(CELL_NAMES)} cells in {seconds:.0f} s\n")


if __name__ == "__main__":
    main()
