"""Parity with PyTorch: the committed reference files (tests/reference/*.npz, written by
tests/reference/make_torch_reference.py) need no torch; the live test runs PyTorch when installed."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rnncli.config import ModelConfig
from rnncli.kernels.cells import CELL_NAMES as CELLS
from rnncli.models.model import Model

REFERENCE = Path(__file__).parent / "reference"


def load_reference(cell):
    with np.load(REFERENCE / f"{cell}.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def run_rnncli(cell, ref, dtype):
    params = {k[len("param."):]: v.astype(dtype) for k, v in ref.items() if k.startswith("param.")}
    V, D = params["embed.weight"].shape
    H = params["layers.0.Wh"].shape[0]
    layers = len({k.split(".")[1] for k in params if k.startswith("layers.")})
    cfg = ModelConfig(cell=cell, vocab_size=V, embed=D, hidden=H, layers=layers)
    state0 = [tuple(ref[f"state0.{layer}.{i}"].astype(dtype) for i in range(len(st)))
              for layer, st in enumerate(Model(cfg).initial_state(1))]
    loss, finals, cache = Model(cfg).forward(params, ref["inputs"], ref["targets"], state0)
    grads = Model(cfg).backward(params, cache)
    return loss, finals, cache, grads


def compare(cell, ref, loss, finals, cache, grads, tol):
    assert loss == pytest.approx(float(ref["loss"]), abs=tol)
    np.testing.assert_allclose(cache.head.top.reshape(ref["top"].shape), ref["top"], atol=tol, rtol=tol,
                               err_msg=f"{cell}: top-layer outputs")
    for layer, st in enumerate(finals):
        for i, s in enumerate(st):
            np.testing.assert_allclose(s, ref[f"final.{layer}.{i}"], atol=tol, rtol=tol,
                                       err_msg=f"{cell}: final state {layer}.{i}")
            np.testing.assert_allclose(cache.dstate0[layer][i], ref[f"grad.state0.{layer}.{i}"], atol=tol,
                                       rtol=tol, err_msg=f"{cell}: gradient of initial state {layer}.{i}")
    for name, g in grads.items():
        np.testing.assert_allclose(g, ref[f"grad.{name}"], atol=tol, rtol=tol, err_msg=f"{cell}: d {name}")


@pytest.mark.parametrize("cell", CELLS)
def test_parity_float64_with_committed_reference(cell):
    ref = load_reference(cell)
    compare(cell, ref, *run_rnncli(cell, ref, np.float64), tol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_parity_float32_with_committed_reference(cell):
    ref = load_reference(cell)
    compare(cell, ref, *run_rnncli(cell, ref, np.float32), tol=1e-4)


@pytest.mark.torch
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch not installed (make torch)")
@pytest.mark.parametrize("cell", CELLS)
def test_parity_with_live_pytorch(cell):
    import sys

    sys.path.insert(0, str(REFERENCE))
    try:
        import make_torch_reference as mk
    finally:
        sys.path.pop(0)
    cfg, params, inputs, targets, state0 = mk.make_inputs(cell, seed=5)
    ref = mk.run_torch(cell, params, inputs, targets, state0)
    ref.update({f"param.{k}": v for k, v in params.items()}, inputs=inputs, targets=targets)
    for layer, st in enumerate(state0):
        for i, s in enumerate(st):
            ref[f"state0.{layer}.{i}"] = s
    compare(cell, ref, *run_rnncli(cell, ref, np.float64), tol=1e-6)


TASK_CELLS = ("lstm", "gru-cudnn", "rnn", "rnn-relu")  # those with a PyTorch module


@pytest.mark.parametrize("task", ["tag", "classify", "translate"])
@pytest.mark.parametrize("cell", TASK_CELLS)
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-6), (np.float32, 1e-4)])
def test_task_parity_with_committed_pytorch_reference(task, cell, dtype, tol):
    """Bidirectional nn.LSTM/GRU/RNN(num_layers=2) + nn.Linear (tag, classify from h_n; an encoder
    starting a decoder for translate), written by make_torch_task_reference.py."""
    from rnncli.tasks import build_model
    from rnncli.tasks.models import Batch

    with np.load(REFERENCE / f"task-{task}-{cell}.npz", allow_pickle=False) as f:
        ref = {k: f[k] for k in f.files}
    params = {k[len("param."):]: v.astype(dtype) for k, v in ref.items() if k.startswith("param.")}
    labels = [f"L{i}" for i in range(params["output.W"].shape[1])] if task != "translate" else []
    V, D = params["embed.weight"].shape
    H = params["layers.0.Wh"].shape[0]
    model = build_model(ModelConfig(cell=cell, vocab_size=V, embed=D, hidden=H, layers=2, task=task,
                                    bidirectional=True, labels=labels))
    batch = Batch(ref["inputs"], ref["targets"], ref.get("decoder_inputs"))
    loss, cache = model.forward(params, batch)
    grads = model.backward(params, cache)
    assert loss == pytest.approx(float(ref["loss"]), abs=tol)
    assert set(grads) == set(params)
    for name, g in grads.items():
        np.testing.assert_allclose(g, ref[f"grad.{name}"], atol=tol, rtol=tol, err_msg=f"{task} {cell}: d {name}")
