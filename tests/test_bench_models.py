"""The benchmarks' rnncli model (bench/common.py's RnncliModel, which `make bench` times) still
drives the engine as the commands do: a training step, scoring and generation run, on a tiny model.
The figures themselves are bench/'s; this only keeps the scripts from falling behind the engine."""

from __future__ import annotations

import sys

import numpy as np

from tests.conftest import ROOT


def test_the_bench_model_trains_scores_and_generates():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from common import RnncliModel
    finally:
        sys.path.remove(str(ROOT / "bench"))
    m = RnncliModel("lstm", {"layers": 1, "hidden": 16, "embed": 8, "batch": 4, "seq": 6}, V=11)
    before = {k: v.copy() for k, v in m.params.items()}
    m.train_step()
    assert any(not np.array_equal(before[k], m.params[k]) for k in before)
    m.score()
    m.generate(5, batch=3)
    m.generate(5)
