"""The packed layout (kernels/packing.py), packed once per sharded pass (cores.PackedOnce), and the
elementwise passes spread over the cores (cores.elementwise_on_cores, the optimizer, the shards'
gradient sum): the same numbers, bit for bit, however the work is spread."""

import numpy as np
import pytest

from rnncli.config import ModelConfig
from rnncli.execution.plan import Plan, planned
from rnncli.models.model import Model
from rnncli.training.optim import Optimizer


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(512, 2048), (65, 512), (33, 17), (7, 5), (1000, 300)])
def test_a_transposed_view_packs_as_the_general_loop(shape, dtype):
    from rnncli.kernels.packing import _pack, block_columns, pack

    W = np.random.default_rng(0).random(shape).astype(dtype)
    for view in (W.T, W[:, : max(1, shape[1] * 2 // 3)].T, W[1:].T):  # whole, a slice of columns, a row fewer
        P = pack(view)
        assert np.array_equal(P, _pack(view, block_columns(dtype)))
        K, F = view.shape
        assert np.array_equal(P.transpose(1, 0, 2).reshape(K, -1)[:, :F], view)  # P[c, k, j] = W[k, c*2V + j]


def lm(B: int = 8, T: int = 6):
    config = ModelConfig(cell="lstm", vocab_size=20, embed=8, hidden=16, layers=2)
    model = Model(config)
    rng = np.random.default_rng(1)
    params = model.init_params(rng)
    inputs, targets = rng.integers(0, 20, (T, B)), rng.integers(0, 20, (T, B))
    return model, params, inputs, targets


def test_a_pass_packed_once_sees_weights_changed_in_place():
    """The second pass prepacks what the first asked for, from the weights as they are then: after an
    update in place, its loss and gradients are a fresh model's, bit for bit."""
    with planned(Plan(2)):
        model, params, inputs, targets = lm()
        for _ in range(3):
            loss, _, cache = model.forward(params, inputs, targets, model.initial_state(8))
            grads = model.backward(params, cache)
            assert model.packs["forward"].asked and model.packs["backward"].asked
            fresh = Model(model.config)
            loss2, _, cache2 = fresh.forward(params, inputs, targets, fresh.initial_state(8))
            grads2 = fresh.backward(params, cache2)
            assert loss == loss2
            assert all(np.array_equal(grads[k], grads2[k]) for k in grads)
            for p in params.values():
                p *= np.float32(0.9)  # the weights change in place, as the optimizer's update does


def test_training_steps_are_the_same_bytes_on_one_core_and_two_for_the_update():
    """The optimizer's elementwise passes and the shards' gradient sum spread over two cores give
    what one core gives: the same shards (batch_shards), the update only spread differently."""
    results = []
    for cores in (2, 1):
        model, params, inputs, targets = lm()
        optimizer = Optimizer("adam", params, 1e-2, clip=0.5)
        with planned(Plan(2)):
            loss, _, cache = model.forward(params, inputs, targets, model.initial_state(8))
            grads = model.backward(params, cache)
        with planned(Plan(cores)):
            norm = optimizer.step(params, grads)
        results.append((norm, params, optimizer.state))
    (n2, p2, s2), (n1, p1, s1) = results
    assert n2 == n1
    assert all(np.array_equal(p2[k], p1[k]) for k in p1)
    assert all(np.array_equal(s2[k], s1[k]) for k in s1)


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_the_shards_gradient_sum_is_numpys(shards):
    from rnncli.execution.cores import PIECE_ELEMENTS, weighted_sum

    rng = np.random.default_rng(2)
    shapes = {"big": (PIECE_ELEMENTS * 2 + 5,), "matrix": (37, 11), "small": (3,)}
    grads = [{k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()} for _ in range(shards)]
    shares = list(rng.dirichlet(np.ones(shards)))
    with planned(Plan(2)):
        total = weighted_sum(grads, shares)
    for name in shapes:
        expected = grads[0][name] * np.float32(shares[0])
        for g, share in zip(grads[1:], shares[1:], strict=True):
            expected += g[name] * np.float32(share)
        assert np.array_equal(total[name], expected)
