"""The output layer's softmax (kernels/output.py): its float32 exp (kernels/activations.py) against
the true exp, the same number wherever a logit sits, and the three forms (whole log-probabilities,
those at the targets, the cross-entropy) agreeing with each other and with float64 maths."""

from __future__ import annotations

import numpy as np
import pytest

from rnncli.kernels.output import log_softmax_rows, softmax_cross_entropy, target_logprobs


def _exp_of_each(x: np.ndarray) -> np.ndarray:
    """exp_nonpositive of every number of x (1-D), in one vectorised loop."""
    from rnncli.kernels.activations import exp_nonpositive
    from rnncli.kernels.jit import kernel

    @kernel
    def apply(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = exp_nonpositive(x[i])
        return out

    return apply(x)


def test_float32_exp_is_within_two_ulp_and_zero_below_the_normal_numbers():
    x = -np.linspace(0, 90, 400_001).astype(np.float32)
    out = _exp_of_each(x)
    exact = np.exp(x.astype(np.float64))
    normal = x > np.float32(-87.33)
    ulp = np.spacing(exact[normal].astype(np.float32)).astype(np.float64)
    assert (np.abs(out[normal] - exact[normal]) / ulp).max() <= 2.0
    assert np.all(out[~normal] == 0)
    assert out[0] == 1.0 and np.all(np.diff(out) <= 0)  # exp(0) = 1, and it never rises as x falls
    edge = _exp_of_each(np.float32([-np.inf, -1e-30, -0.0]))
    assert edge.tolist() == [0.0, 1.0, 1.0]


def test_float32_exp_is_the_same_number_alone_or_in_a_vector():
    """A logit's exp never depends on its neighbours or its lane: computed one at a time (the
    scalar loop's remainder) it equals the vectorised loop's, at every offset."""
    x = -np.abs(np.random.default_rng(0).standard_normal(1000) * 20).astype(np.float32)
    together = _exp_of_each(x)
    alone = np.array([_exp_of_each(x[i:i + 1])[0] for i in range(0, 1000, 7)])
    assert together[::7].tobytes() == alone.tobytes()
    for offset in range(1, 17):
        assert _exp_of_each(x[offset:]).tobytes() == together[offset:].tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_three_forms_agree(dtype):
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((37, 1003)) * 4).astype(dtype)
    targets = rng.integers(0, 1003, 37)
    whole = log_softmax_rows(logits.copy())
    at_targets = target_logprobs(logits.copy(), targets)
    assert at_targets.tobytes() == whole[np.arange(37), targets].tobytes()
    exact = logits.astype(np.float64)
    exact = exact - exact.max(axis=1, keepdims=True)
    exact -= np.log(np.exp(exact).sum(axis=1, keepdims=True))
    tolerance = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(whole, exact, atol=tolerance, rtol=0)
    np.testing.assert_allclose(np.exp(whole.astype(np.float64)).sum(axis=1), 1.0, atol=tolerance)
    loss, grad = softmax_cross_entropy(logits.copy(), targets)
    assert loss == pytest.approx(-exact[np.arange(37), targets].mean(), abs=tolerance)
    expected = np.exp(exact)
    expected[np.arange(37), targets] -= 1
    np.testing.assert_allclose(grad, expected / 37, atol=tolerance / 37)
