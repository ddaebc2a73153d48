"""Layers with a direction: a reversed layer is the same cell read from the end of the chunk, and
its backward pass is checked against finite differences in float64, for every cell."""

from contextlib import nullcontext

import numpy as np
import pytest

from rnncli.kernels.blas import one_blas_thread
from rnncli.kernels.cells import CELL_NAMES, get_cell
from rnncli.models.layers import Layer, Stack
from tests.gradcheck import assert_close_grads, numerical_grad

T, B, D, H = 4, 3, 5, 6


def setup(name, seed=0):
    cell = get_cell(name)
    rng = np.random.default_rng(seed)
    p = {k: rng.normal(0, 0.5, v.shape) for k, v in cell.init_params(rng, D, H, np.float64).items()}
    x = rng.normal(size=(T, B, D))
    s0 = tuple(rng.normal(size=(B, H)) for _ in range(cell.state_size))
    return cell, p, x, s0, rng


@pytest.mark.parametrize("name", CELL_NAMES)
def test_a_reversed_layer_reads_the_chunk_from_its_end(name):
    cell, p, x, s0, _ = setup(name)
    hs, sT, _ = Layer(cell, reverse=True).forward(p, x, s0, keep=False)
    expected, expected_T, _ = cell.forward(p, np.ascontiguousarray(x[::-1]), s0, keep=False)
    np.testing.assert_allclose(hs, expected[::-1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hs[0], sT[0], rtol=1e-12, atol=1e-12)  # its final state summarises x<1..T>
    for a, b in zip(sT, expected_T, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", CELL_NAMES)
@pytest.mark.parametrize("projected", [False, True])
def test_reversed_layer_gradients_match_finite_differences(name, projected):
    cell, p, x, s0, rng = setup(name)
    layer = Layer(cell, reverse=True)
    R = rng.normal(size=(T, B, H))
    Rs = tuple(rng.normal(size=(B, H)) for _ in s0)
    xw = (x.reshape(T * B, D) @ p["Wx"] + p["b"]).reshape(T, B, -1)

    def run(keep):
        if projected:
            return layer.forward_projected(p, xw, s0, keep)
        return layer.forward(p, x, s0, keep)

    def loss():
        hs, sT, _ = run(False)
        return (hs * R).sum() + sum((s * r).sum() for s, r in zip(sT, Rs, strict=True))

    hs, sT, cache = run(True)
    if projected:
        grads, dxw, ds0 = layer.backward_projected(p, cache, R, Rs)
        assert_close_grads(f"{name} xw", dxw, numerical_grad(loss, xw))
        names = [k for k in p if k not in ("Wx", "b")]
    else:
        grads, dx, ds0 = layer.backward(p, cache, R, Rs)
        assert_close_grads(f"{name} x", dx, numerical_grad(loss, x))
        names = list(p)
    for k in names:
        assert_close_grads(f"{name} {k}", grads[k], numerical_grad(loss, p[k]))
    for i, s in enumerate(s0):
        assert_close_grads(f"{name} state0[{i}]", ds0[i], numerical_grad(loss, s))


@pytest.mark.parametrize("threads", ["blas default", "one blas thread"])
@pytest.mark.parametrize("name", CELL_NAMES)
def test_bidirectional_stack_gradients_match_finite_differences(name, threads):
    """Two bidirectional levels (the second reads both directions of the first), dropout masks,
    a gradient on every output and on every final state; one direction after the other, and (under
    one BLAS thread, as the label models run) side by side."""
    with one_blas_thread() if threads == "one blas thread" else nullcontext():
        _check_bidirectional_stack_gradients(name)


def _check_bidirectional_stack_gradients(name):
    cell = get_cell(name)
    rng = np.random.default_rng(3)
    stack = Stack(cell, 2, D, H, dropout=0.3, bidirectional=True)
    params = {k: rng.normal(0, 0.5, v.shape) for k, v in stack.init_params(rng, np.float64).items()}
    assert "layers.1.reverse.Wx" in params and params["layers.1.reverse.Wx"].shape[0] == 2 * H
    x = rng.normal(size=(T, B, D))
    s0 = [tuple(rng.normal(size=(B, H)) for _ in range(cell.state_size)) for _ in stack.layers]
    masks = stack.dropout_masks(rng, T, B, np.float64)
    R = rng.normal(size=(T, B, 2 * H))
    Rs = [tuple(rng.normal(size=(B, H)) for _ in s) for s in s0]

    def loss():
        top, states, _ = stack.forward(params, x, s0, masks, keep=False)
        return (top * R).sum() + sum((a * r).sum() for s, rs in zip(states, Rs, strict=True)
                                     for a, r in zip(s, rs, strict=True))

    top, _, caches = stack.forward(params, x, s0, masks)
    grads, dx, ds0 = stack.backward(params, caches, R, masks, dstatesT=Rs)
    assert_close_grads(f"{name} x", dx, numerical_grad(loss, x))
    for k in params:
        assert_close_grads(f"{name} {k}", grads[k], numerical_grad(loss, params[k]))
    for i, s in enumerate(s0):
        for j, a in enumerate(s):
            assert_close_grads(f"{name} state0[{i}][{j}]", ds0[i][j], numerical_grad(loss, a))


def test_bidirectional_output_is_forward_and_reversed_side_by_side():
    cell = get_cell("gru")
    rng = np.random.default_rng(4)
    stack = Stack(cell, 1, D, H, bidirectional=True)
    params = stack.init_params(rng, np.float64)
    x = rng.normal(size=(T, B, D))
    top, states, _ = stack.forward(params, x, stack.initial_state(B, np.float64), keep=False)
    fwd, _, _ = Layer(cell).forward(stack.layer_params(params, 0), x, cell.initial_state(B, H, np.float64), False)
    rev, _, _ = Layer(cell, True).forward(stack.layer_params(params, 1), x, cell.initial_state(B, H, np.float64), False)
    np.testing.assert_allclose(top, np.concatenate([fwd, rev], axis=2))
    np.testing.assert_allclose(states[1][0], rev[0])  # the reversed layer ends at the first position
