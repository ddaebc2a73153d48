"""The optimizers against the textbook formulas, written here in float64 numpy, and gradient
clipping against its definition."""

import math

import numpy as np
import pytest

from rnncli.training.optim import Optimizer, global_norm

STEPS = 4


def make(seed=0):
    rng = np.random.default_rng(seed)
    params = {"a": rng.normal(size=(3, 5)).astype(np.float32), "b": rng.normal(size=7).astype(np.float32)}
    grads = [{k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()} for _ in range(STEPS)]
    return params, grads


def reference(kind, params, grads, lr, weight_decay=0.0, clip=0.0, momentum=0.9, b1=0.9, b2=0.999, eps=1e-8):
    p = {k: v.astype(np.float64) for k, v in params.items()}
    state = {k: [np.zeros_like(v), np.zeros_like(v)] for k, v in p.items()}
    for step, g_all in enumerate(grads, start=1):
        norm = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in g_all.values()))
        scale = min(1.0, clip / (norm + 1e-12)) if clip > 0 else 1.0
        for k in p:
            g = g_all[k].astype(np.float64) * scale
            s = state[k]
            if kind in ("adam", "adamw"):
                if kind == "adam":
                    g = g + weight_decay * p[k]
                s[0] = b1 * s[0] + (1 - b1) * g
                s[1] = b2 * s[1] + (1 - b2) * g * g
                update = (s[0] / (1 - b1**step)) / (np.sqrt(s[1] / (1 - b2**step)) + eps)
                if kind == "adamw":
                    update = update + weight_decay * p[k]
                p[k] = p[k] - lr * update
            elif kind == "rmsprop":
                g = g + weight_decay * p[k]
                s[1] = 0.99 * s[1] + 0.01 * g * g
                p[k] = p[k] - lr * g / (np.sqrt(s[1]) + eps)
            else:  # sgd with momentum
                g = g + weight_decay * p[k]
                s[0] = momentum * s[0] + g
                p[k] = p[k] - lr * s[0]
    return p


@pytest.mark.parametrize("kind", ["adam", "adamw", "rmsprop", "sgd"])
@pytest.mark.parametrize("weight_decay, clip", [(0.0, 0.0), (0.01, 1.5)])
def test_optimizer_follows_its_formula(kind, weight_decay, clip):
    params, grads = make()
    expected = reference(kind, params, grads, lr=0.01, weight_decay=weight_decay, clip=clip)
    opt = Optimizer(kind, params, 0.01, weight_decay=weight_decay, clip=clip)
    for g in grads:
        opt.step(params, g)
    for k, v in params.items():
        assert v.dtype == np.float32
        np.testing.assert_allclose(v, expected[k], rtol=1e-5, atol=1e-6, err_msg=f"{kind} {k}")


def test_step_returns_the_norm_before_clipping_and_clips_to_the_limit():
    params, grads = make(1)
    norm = global_norm(grads[0])
    assert norm == pytest.approx(math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads[0].values())))
    before = {k: v.copy() for k, v in params.items()}
    opt = Optimizer("sgd", params, 1.0, clip=norm / 4, momentum=0.0)
    assert opt.step(params, grads[0]) == pytest.approx(norm)
    moved = math.sqrt(sum(float(((before[k] - params[k]).astype(np.float64) ** 2).sum()) for k in params))
    assert moved == pytest.approx(norm / 4, rel=1e-5)  # plain sgd, lr 1: the step is the clipped gradient


def test_a_non_finite_gradient_changes_nothing():
    params, grads = make(2)
    grads[0]["b"][3] = np.nan
    before = {k: v.copy() for k, v in params.items()}
    opt = Optimizer("adam", params, 0.01)
    assert not math.isfinite(opt.step(params, grads[0]))
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert opt.step_count == 0


@pytest.mark.parametrize("kind, weight_decay", [("adam", 0.0), ("adam", 0.01), ("adamw", 0.01), ("sgd", 0.01)])
def test_an_embedding_gradient_kept_as_rows_updates_as_the_dense_one(kind, weight_decay):
    """Bit for bit: the rows a batch did not read still move (their moments decay), as in dense Adam."""
    from rnncli.kernels.output import embedding_backward, embedding_row_gradient

    rng = np.random.default_rng(0)
    V, D, T, B = 50, 6, 4, 3
    ids = rng.integers(0, V, (T, B))
    ids[0, 0] = ids[1, 1]  # a row read twice
    dx = rng.normal(size=(T, B, D)).astype(np.float32)
    sparse = embedding_row_gradient(ids, dx, V)
    dense = embedding_backward(ids, dx, V)
    np.testing.assert_array_equal(sparse.dense(), dense)
    assert list(sparse.rows) == sorted(set(ids.reshape(-1).tolist()))
    params_a = {"E": rng.normal(size=(V, D)).astype(np.float32)}
    params_b = {"E": params_a["E"].copy()}
    opt_a = Optimizer(kind, params_a, 1e-2, weight_decay, clip=0.5)
    opt_b = Optimizer(kind, params_b, 1e-2, weight_decay, clip=0.5)
    for _ in range(3):
        assert opt_a.step(params_a, {"E": dense}) == pytest.approx(opt_b.step(params_b, {"E": sparse}), rel=1e-12)
    np.testing.assert_array_equal(params_a["E"], params_b["E"])
