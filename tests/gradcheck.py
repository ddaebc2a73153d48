"""Central finite differences in float64, the reference every kernel's backward is held against."""

from __future__ import annotations

import numpy as np


def numerical_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f() / d x by central differences, perturbing x in place."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def assert_close_grads(name: str, analytic: np.ndarray, numeric: np.ndarray, tol: float = 1e-6) -> None:
    """Max relative error <= tol, with the denominator floored so near-zero entries compare absolutely."""
    analytic = np.asarray(analytic)  # an embedding's RowGradient as its full array
    assert analytic.shape == numeric.shape, f"{name}: shape {analytic.shape} != {numeric.shape}"
    denom = np.maximum(np.abs(analytic) + np.abs(numeric), 1.0)
    rel = np.abs(analytic - numeric) / denom
    worst = np.unravel_index(np.argmax(rel), rel.shape) if rel.size else ()
    assert rel.max(initial=0.0) <= tol, (
        f"{name}: max relative error {rel.max():.3e} at index {worst}: "
        f"analytic {analytic[worst]:.10g} vs numeric {numeric[worst]:.10g}"
    )
