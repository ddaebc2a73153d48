"""The eight-bit rule (plain numpy, no Numba): int8 numbers and their scales, for the checkpoint's
weights (formats/int8.py) and the single step's int8 form (kernels/int8.py).

A matrix W (K, F) multiplied as x @ W is stored as int8 numbers q and float32 scales s, one scale
per column j and group of k (its inner dimension):

    W'[k, j] = q[k, j] * s[g, j]     for k in group g,   |q| <= 127,
    s[g, j] = max_{k in g} |W[k, j]| / 127, rounded to 16 significant bits,   q = round(W / s)

Schemes: `row`, one group per column (an output unit's whole row of weights in PyTorch's (F, K)
layout, "per output row", as CTranslate2 and PyTorch's dynamic quantization); `block32`, groups
of 32 k (llama.cpp's q8_0). An embedding E (V, D), read by rows, is quantized as E^T (each token's
row its own column): the same rule, the same layout as a tied output layer reads it.

The 16-bit scales make the dequantized weights exact: q has 7 significant bits and s 16, so every
q * s is exact in float32 (24 bits). A quantized model *is* its dequantized float32 model, W' in
place of W, bit for bit, on every path that reads weights (the loader dequantizes:
formats/checkpoint.py); and quantizing W' again gives the same q and s (its largest |q| per group is
127 by construction, so s = max|W'| / 127 exactly), so saving a loaded quantized model is lossless.
"""

from __future__ import annotations

import numpy as np

SCHEMES = ("row", "block32")
BLOCK = 32  # k per group in the block32 scheme
QMAX = 127
SCALE_BITS = 16  # significant bits of a scale: with q's 7, every q * s exact in float32


def group_starts(K: int, scheme: str) -> np.ndarray:
    """The first k of each group along K rows, and K at the end (groups + 1,)."""
    return np.array([0, K] if scheme == "row" else list(range(0, K, BLOCK)) + [K], np.int64)


def round_scale(s: np.ndarray) -> np.ndarray:
    """float32 scales rounded to SCALE_BITS significant bits (to nearest)."""
    drop = 24 - SCALE_BITS
    bits = np.ascontiguousarray(s, np.float32).view(np.uint32)
    mask = np.uint32((0xFFFFFFFF << drop) & 0xFFFFFFFF)
    return ((bits + np.uint32(1 << (drop - 1))) & mask).view(np.float32)


def quantize(W: np.ndarray, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """W (K, F) -> (q (K, F) int8, s (groups, F) float32). An all-zero group gets the scale 1."""
    starts = group_starts(W.shape[0], scheme)
    amax = np.maximum.reduceat(np.abs(W.astype(np.float64)), starts[:-1], axis=0)
    s = round_scale(np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32))
    per_row = np.repeat(s, np.diff(starts), axis=0).astype(np.float64)
    q = np.clip(np.rint(W / per_row), -QMAX, QMAX).astype(np.int8)
    return q, s


def dequantize(q: np.ndarray, s: np.ndarray, scheme: str) -> np.ndarray:
    """W' = q * s (K, F), float32, exact."""
    starts = group_starts(q.shape[0], scheme)
    return q.astype(np.float32) * np.repeat(s, np.diff(starts), axis=0)
