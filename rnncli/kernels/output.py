"""Embedding lookup and the output layer: projection, softmax and cross-entropy.

    ŷ<t> = softmax(W_ya h<t> + b_y),   L<t> = -log ŷ<t>[y<t>]        (the notes' output and loss)

Softmax and cross-entropy are fused: one pass gives the loss and, in place of the logits, the
gradient ŷ - onehot(y). The maximum and the sums are numpy's, over whole (N, V) blocks; the exp of
the logits less their maximum is rnncli's (`exp_less_max`, kernels/activations.py): float32's is a
polynomial in fused multiply-adds that LLVM vectorises, 0.12 ns an element against numpy's 0.36
(in cache, AMD EPYC Zen 5), and the same number on any CPU. At a large vocabulary the exp is most
of the output layer's time after its product (an adaptive softmax's 40,000-word cluster: 3.2 ms of
its 4.5 for 91 rows, one core).
"""

from __future__ import annotations

import numpy as np

from rnncli.kernels.activations import exp_nonpositive
from rnncli.kernels.jit import kernel


def embedding_forward(E: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """E (V, D), ids (T, B) -> x (T, B, D)."""
    return E[ids]


@kernel
def embedding_backward(ids, dx, V):
    """Scatter-add dx (T, B, D) into dE (V, D) at rows ids (T, B)."""
    T, B, D = dx.shape
    dE = np.zeros((V, D), dtype=dx.dtype)
    for t in range(T):
        for b in range(B):
            row = ids[t, b]
            for k in range(D):
                dE[row, k] += dx[t, b, k]
    return dE


class RowGradient:
    """The gradient of an embedding E (V, D): zero but in the rows of the tokens a batch read.
    Kept as those rows (sorted, distinct) and their values, a word-level model's optimizer step
    skips writing, summing and reading a (V, D) array that is nearly all zeros; `dense()` (or
    np.asarray) gives the full array."""

    def __init__(self, rows: np.ndarray, values: np.ndarray, shape: tuple[int, int]):
        self.rows, self.values, self.shape = rows, values, shape

    @property
    def dtype(self):
        return self.values.dtype

    def dense(self) -> np.ndarray:
        out = np.zeros(self.shape, self.values.dtype)
        out[self.rows] = self.values
        return out

    def __array__(self, dtype=None, copy=None):
        return self.dense() if dtype is None else self.dense().astype(dtype)

    @staticmethod
    def weighted_sum(parts: list[RowGradient], shares: list[float]) -> RowGradient:
        """sum_k shares[k] * parts[k], over the union of their rows (a batch's shards, model.py)."""
        rows = np.unique(np.concatenate([p.rows for p in parts]))
        values = np.zeros((rows.size, parts[0].shape[1]), parts[0].dtype)
        for p, share in zip(parts, shares, strict=True):
            values[np.searchsorted(rows, p.rows)] += p.values * p.dtype.type(share)
        return RowGradient(rows, values, parts[0].shape)


@kernel
def _row_sums(ids, dx, V):
    """The distinct rows of ids (T, B), sorted, and dx (T, B, D) summed per row."""
    T, B, D = dx.shape
    slot = np.full(V, -1, np.int64)
    for t in range(T):
        for b in range(B):
            slot[ids[t, b]] = 0
    rows = np.flatnonzero(slot >= 0)
    for k in range(rows.size):
        slot[rows[k]] = k
    values = np.zeros((rows.size, D), dtype=dx.dtype)
    for t in range(T):
        for b in range(B):
            k = slot[ids[t, b]]
            for d in range(D):
                values[k, d] += dx[t, b, d]
    return rows, values


def embedding_row_gradient(ids: np.ndarray, dx: np.ndarray, V: int) -> RowGradient:
    """The embedding's gradient from dx (T, B, D) at rows ids (T, B), as a RowGradient: the same
    sums as `embedding_backward`, in the same order."""
    rows, values = _row_sums(ids, np.ascontiguousarray(dx), V)
    return RowGradient(rows, values, (V, dx.shape[2]))


@kernel
def _exp_less_max(z, m):
    """z[r, j] <- exp(z[r, j] - m[r]) for z (N, V), m (N,). In place, through one array: given an
    output array that is z itself, LLVM's check for overlap fails and it runs the scalar loop."""
    N, V = z.shape
    for r in range(N):
        shift, row = m[r], z[r]
        for j in range(V):
            row[j] = exp_nonpositive(row[j] - shift)


def exp_less_max(z: np.ndarray) -> np.ndarray:
    """The maximum of each row of z (N, V), z's numbers replaced by exp(z - max)."""
    m = z.max(axis=1)
    _exp_less_max(z, m)
    return m


def log_softmax_rows(logits: np.ndarray) -> np.ndarray:
    """log ŷ for each row of logits (N, V), computed in place: (z - max) - log sum exp(z - max)."""
    e = logits.copy()
    m = exp_less_max(e)
    logits -= m[:, None]
    logits -= np.log(e.sum(axis=1))[:, None]
    return logits


def target_logprobs(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log ŷ[y] for each row: logits (N, V) (overwritten), targets (N,) -> (N,). The numbers of
    `log_softmax_rows` at the targets, (z[y] - max) - log sum exp(z - max), with no (N, V) block
    written but the exp: what scoring a large vocabulary costs."""
    picked = logits[np.arange(len(targets)), targets]
    m = exp_less_max(logits)
    return (picked - m) - np.log(logits.sum(axis=1))


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy over N rows and its gradient w.r.t. the logits, (ŷ - onehot(y)) / N,
    written over `logits` (N, V). A row whose target is negative (padding, a piece that carries no
    tag) counts for nothing: the mean is over the others, and its gradient is zero."""
    ignored = targets < 0
    if ignored.any():
        keep = ~ignored
        loss, dkept = softmax_cross_entropy(np.ascontiguousarray(logits[keep]), targets[keep]) \
            if keep.any() else (0.0, logits[:0])
        logits[ignored] = 0.0
        logits[keep] = dkept
        return loss, logits
    N = len(targets)
    rows = np.arange(N)
    target_logit = logits[rows, targets]
    target_logit -= exp_less_max(logits)
    total = logits.sum(axis=1)
    loss = float(np.mean(np.log(total) - target_logit))
    logits *= (1.0 / total)[:, None] / N  # ŷ / N
    logits[rows, targets] -= 1.0 / N
    return loss, logits
