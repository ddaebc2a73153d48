"""Layers with a direction: a reversed layer is the same cell read from the end of the chunk, and
its backward pass is checked against finite differences in float64, for every cell."""

import numpy as np
import pytest

from rnncli.kernels.cells import CELL_NAMES, get_cell
from rnncli.layers import Layer
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
