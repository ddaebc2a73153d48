"""From the top layer's output to the next token, inside Numba: the single step's output layer (a
dense layer's logits, or an adaptive softmax's exact log-probabilities, models/adaptive.py) and
the choice of the next token from them (temperature, top-k, top-p; an adaptive softmax's plain
samples by cluster, then word). kernels/generate.py runs them at every step of a generation; the
ranking helpers serve its beam search too."""

from typing import NamedTuple

import numpy as np
from numba import types

from rnncli.kernels.jit import inline, kernel, overload_by_type
from rnncli.kernels.recurrent import add_row, step_times

UNK = 0
EOS = 1


class AdaptiveOutput(NamedTuple):
    """The rest of an adaptive softmax's output layer for the step (its head's matrix is Wy): the
    head's bias (c_1 + K,), the bounds [c_1, ..., c_K, V] (int64), and each tail's projection and
    output matrices, held."""

    bias: np.ndarray
    bounds: np.ndarray
    projections: tuple
    outputs: tuple


def output_layer(top, Wy, by):
    """The step's output: top (B, H) -> the next token's logits (B, V) (top @ W_y + b_y); for an
    adaptive softmax (by an AdaptiveOutput) its exact log-probabilities, every tail computed: as
    logits they give the same distribution, so temperature, top-k, top-p and the beam read them as
    they read a dense layer's, over the whole vocabulary."""
    raise NotImplementedError("output_layer runs inside Numba kernels only")


@inline
def _log_softmax_row(row):
    """row (F,) -> log softmax(row), in place; the sum in float64."""
    m = -np.inf
    for j in range(row.shape[0]):
        m = max(m, np.float64(row[j]))
    s = 0.0
    for j in range(row.shape[0]):
        s += np.exp(np.float64(row[j]) - m)
    shift = m + np.log(s)
    for j in range(row.shape[0]):
        row[j] = np.float64(row[j]) - shift


@overload_by_type(output_layer)
def _output_layer(top, Wy, by):
    if isinstance(by, types.BaseNamedTuple):

        def adaptive(top, Wy, by):
            head = step_times(top, Wy)
            add_row(head, by.bias)
            bounds = by.bounds
            shortlist, K = bounds[0], bounds.shape[0] - 1
            out = np.empty((top.shape[0], bounds[K]), dtype=top.dtype)
            for b in range(top.shape[0]):
                _log_softmax_row(head[b])
                for j in range(shortlist):
                    out[b, j] = head[b, j]
            for i in range(K):
                tail = step_times(step_times(top, by.projections[i]), by.outputs[i])
                for b in range(top.shape[0]):
                    _log_softmax_row(tail[b])
                    for j in range(tail.shape[1]):
                        out[b, bounds[i] + j] = tail[b, j] + head[b, shortlist + i]
            return out

        return adaptive

    def dense(top, Wy, by):
        logits = step_times(top, Wy)
        add_row(logits, by)
        return logits

    return dense


@inline
def _ranks_before(value, a, b):
    """Whether item a ranks before item b: a larger value, or an equal one and a smaller index (the
    order of a stable sort from the largest value down)."""
    return value[a] > value[b] or (value[a] == value[b] and a < b)


@inline
def _sift_down(heap, root, end, value, best_on_top):
    """Restore the heap order of heap[:end] below `root` (items ranked by `_ranks_before`): the best
    item on top, or the worst."""
    while True:
        child = 2 * root + 1
        if child >= end:
            return
        if child + 1 < end and _ranks_before(value, heap[child + 1], heap[child]) == best_on_top:
            child += 1
        if _ranks_before(value, heap[child], heap[root]) != best_on_top:
            return
        heap[root], heap[child] = heap[child], heap[root]
        root = child


@inline
def _descending_order(p):
    """Indices of p from its largest value to its smallest (ties: the smaller index first), by
    heapsort: a heap with the smallest on top is built (roots n//2-1 ... 0 sifted down), then its
    smallest is swapped to the end, one at a time. One loop holds both phases so that the sift-down
    is inlined once (twice: a first sample compiled 0.2-0.4 s longer). (np.argsort takes ~1.3 s to
    compile, and this kernel is compiled on the first sample after an install.)"""
    n = p.shape[0]
    order = np.empty(n, dtype=np.int64)
    for i in range(n):  # np.arange compiles ~0.2 s longer
        order[i] = i
    start, end = n // 2, n
    while end > 1:
        if start > 0:  # building the heap
            start -= 1
            root = start
        else:  # taking the smallest out
            end -= 1
            order[0], order[end] = order[end], order[0]
            root = 0
        _sift_down(order, root, end, p, False)
    return order


@kernel
def choose_token(logits, temperature, top_k, top_p, u):
    """Pick the next token from logits (V,) with one uniform number u in [0, 1).

    <UNK> is never chosen: its probability is removed and the rest renormalised, which is the same
    distribution as drawing again whenever <UNK> comes up. temperature 0 means argmax. top_k keeps
    the k most likely tokens, top_p the smallest most-likely set whose mass reaches p; both apply
    after temperature. Returns (token, log-probability under the model at temperature 1)."""
    V = logits.shape[0]
    m = -np.inf
    for i in range(V):
        if i != UNK and logits[i] > m:
            m = logits[i]
    total = 0.0
    for i in range(V):
        if i != UNK:
            total += np.exp(np.float64(logits[i]) - m)
    log_z = m + np.log(total)  # normaliser without <UNK>
    if temperature <= 0.0:
        best = 1 if UNK == 0 else 0
        for i in range(V):
            if i != UNK and logits[i] > logits[best]:
                best = i
        return best, np.float64(logits[best]) - log_z
    p = np.empty(V)
    s = 0.0  # sums in order, as p.sum() does (which compiles longer)
    for i in range(V):
        p[i] = 0.0 if i == UNK else np.exp((np.float64(logits[i]) - m) / temperature)
        s += p[i]
    if top_k > 0 or top_p < 1.0:
        order = _descending_order(p)
        keep = V - 1 if top_k <= 0 else min(top_k, V - 1)  # <UNK> is never kept
        if top_p < 1.0:
            acc = 0.0
            for n in range(keep):
                acc += p[order[n]] / s
                if acc >= top_p:
                    keep = n + 1
                    break
        for n in range(keep, V):
            p[order[n]] = 0.0
        s = 0.0
        for i in range(V):
            s += p[i]
    target = u * s
    acc = 0.0
    chosen = -1
    for i in range(V):
        if p[i] > 0.0:
            acc += p[i]
            chosen = i
            if acc > target:
                break
    return chosen, np.float64(logits[chosen]) - log_z


def next_tokens(top, Wy, by, temperature, top_k, top_p, u, chosen, lp):
    """Each row's next token from the top layer's output top (N, H), as `choose_token` picks it from
    the whole distribution with row b's settings and uniform u[b], into chosen (N,) and lp (N,).
    An adaptive softmax's rows sampled plainly (temperature 1, no top-k, no top-p) draw a head entry,
    then, when it is a cluster's, a word of that cluster alone: the same distribution (p(word) =
    p(cluster) p(word | cluster)) at the cost of the head and one tail; the uniform's place within
    the chosen entry's share is the second draw's uniform. Other rows read the whole distribution."""
    raise NotImplementedError("next_tokens runs inside Numba kernels only")


@inline
def _draw(row, skip, u):
    """The entry of log-probabilities row (F,) that uniform u picks (entry `skip` never; -1: none),
    the mass before it and its own, and the total: the cumulative walk of `choose_token`."""
    total = 0.0
    for j in range(row.shape[0]):
        if j != skip:
            total += np.exp(np.float64(row[j]))
    target = u * total
    acc, before, chosen = 0.0, 0.0, -1
    for j in range(row.shape[0]):
        if j != skip:
            p = np.exp(np.float64(row[j]))
            if p > 0.0:
                before = acc
                acc += p
                chosen = j
                if acc > target:
                    break
    return chosen, target - before, acc - before, total


@overload_by_type(next_tokens)
def _next_tokens(top, Wy, by, temperature, top_k, top_p, u, chosen, lp):
    if isinstance(by, types.BaseNamedTuple):

        def cluster_then_word(top, Wy, by, temperature, top_k, top_p, u, chosen, lp):
            N, H = top.shape
            plain = np.empty(N, dtype=np.bool_)
            others = 0
            for b in range(N):
                plain[b] = temperature[b] == 1.0 and top_k[b] <= 0 and top_p[b] >= 1.0
                if not plain[b]:
                    others += 1
            if others > 0:  # the whole distribution of the rows that need it
                rows = np.empty(others, dtype=np.int64)
                sub = np.empty((others, H), dtype=top.dtype)
                k = 0
                for b in range(N):
                    if not plain[b]:
                        rows[k] = b
                        for j in range(H):
                            sub[k, j] = top[b, j]
                        k += 1
                full = output_layer(sub, Wy, by)
                for k in range(others):
                    b = rows[k]
                    chosen[b], lp[b] = choose_token(full[k], temperature[b], top_k[b], top_p[b], u[b])
            if others == N:
                return
            head = step_times(top, Wy)
            add_row(head, by.bias)
            shortlist = by.bounds[0]
            one = np.empty((1, H), dtype=top.dtype)
            for b in range(N):
                if not plain[b]:
                    continue
                _log_softmax_row(head[b])
                entry, into, share, total = _draw(head[b], UNK, u[b])
                lp[b] = np.float64(head[b, entry]) - np.log(total)  # without <UNK>, as choose_token's
                if entry < shortlist:
                    chosen[b] = entry
                    continue
                i = entry - shortlist
                for j in range(H):
                    one[0, j] = top[b, j]
                tail = step_times(step_times(one, by.projections[i]), by.outputs[i])
                _log_softmax_row(tail[0])
                word, _, _, _ = _draw(tail[0], -1, min(into / share, 1.0))
                chosen[b] = by.bounds[i] + word
                lp[b] += np.float64(tail[0, word])

        return cluster_then_word

    def whole(top, Wy, by, temperature, top_k, top_p, u, chosen, lp):
        logits = output_layer(top, Wy, by)
        for b in range(top.shape[0]):
            chosen[b], lp[b] = choose_token(logits[b], temperature[b], top_k[b], top_p[b], u[b])

    return whole
