"""Batch-1 generation inside Numba: the whole model's step and the choice of the next token,
for many tokens per call, so Python runs once per call rather than once per token.

Parameters are passed stacked per layer (see rnncli/sample.py, `GenerationWeights`):
    Wx0 (D, G*H) first layer's input weights; WxR (max(L-1, 1), H, G*H) the other layers'
    WhA (L, H, A), WhB (L, H, C): the recurrent weights, whole (A = G*H) or, for the notes' GRU,
        split into the [u, r] block (A = 2H) and the c~ block (C = H)
    b (L, G*H), peep (L, 3, H), bhn (L, H) (gru-cudnn's b_hn), Wy (H, V), by (V,)
    h, c (L, 1, H): the state, updated in place.
Cell codes: 0 rnn, 1 rnn-relu, 2 gru, 3 gru-simple, 4 lstm, 5 lstm-peephole, 6 gru-cudnn.
"""

import numpy as np

from rnncli.kernels.gru import _candidate, _cudnn_gates, _interpolate, _simple_gates, _update_relevance
from rnncli.kernels.jit import inline, kernel
from rnncli.kernels.lstm import _activate_gates, _new_state
from rnncli.kernels.rnn import _rnn_math

CELL_CODES = {"rnn": 0, "rnn-relu": 1, "gru": 2, "gru-simple": 3, "lstm": 4, "lstm-peephole": 5, "gru-cudnn": 6}
UNK = 0
EOS = 1


@kernel
def model_step(cell, token, E, Wx0, WxR, WhA, WhB, b, peep, bhn, Wy, by, h, c, logits):
    """Feed one token; write the next-token logits (V,) and update h, c (L, 1, H) in place."""
    L, _, H = h.shape
    x = E[token : token + 1]  # (1, D)
    for layer in range(L):
        Wx = Wx0 if layer == 0 else WxR[layer - 1]
        xw = np.dot(x, Wx) + b[layer]  # (1, G*H)
        h_prev = h[layer]
        if cell <= 1:
            _rnn_math(np.dot(h_prev, WhA[layer]), xw, cell == 1, h_prev)
        elif cell == 2:
            ur = np.empty((1, 2 * H), dtype=h.dtype)
            rh = np.empty_like(h_prev)
            _update_relevance(np.dot(h_prev, WhA[layer]), xw, h_prev, ur, rh)
            cand = np.empty_like(h_prev)
            _candidate(np.dot(rh, WhB[layer]), xw, cand)
            _interpolate(ur, cand, 0, 0, h_prev.copy(), h_prev)
        elif cell == 6:
            rz = np.empty((1, 2 * H), dtype=h.dtype)
            hn = np.empty_like(h_prev)
            n = np.empty_like(h_prev)
            _cudnn_gates(np.dot(h_prev, WhA[layer]), xw, bhn[layer], rz, hn, n, h_prev.copy(), h_prev)
        elif cell == 3:
            g = np.empty_like(xw)
            _simple_gates(np.dot(h_prev, WhA[layer]), xw, g)
            _interpolate(g, g, 0, H, h_prev.copy(), h_prev)
        else:  # lstm, lstm-peephole
            g = np.empty_like(xw)
            c_prev = c[layer].copy()
            _activate_gates(np.dot(h_prev, WhA[layer]), xw, c_prev, peep[layer], cell == 5, g)
            _new_state(g, c_prev, peep[layer], cell == 5, c[layer], h_prev)
        x = h_prev
    logits[:] = (np.dot(x, Wy) + by)[0]


@inline
def _sift_down(p, order, root, size):
    """Restore the min-heap order of p[order[:size]] below `root`."""
    while True:
        child = 2 * root + 1
        if child >= size:
            return
        if child + 1 < size and p[order[child + 1]] < p[order[child]]:
            child += 1
        if p[order[child]] >= p[order[root]]:
            return
        order[root], order[child] = order[child], order[root]
        root = child


@inline
def _descending_order(p):
    """Indices of p from its largest value to its smallest, by heapsort: moving the heap's
    smallest to the end, one at a time, leaves the largest first. (np.argsort does the same but
    takes ~1.3 s to compile, and this kernel is compiled on the first sample after an install.)"""
    n = p.shape[0]
    order = np.arange(n)
    for root in range(n // 2 - 1, -1, -1):
        _sift_down(p, order, root, n)
    for end in range(n - 1, 0, -1):
        order[0], order[end] = order[end], order[0]
        _sift_down(p, order, 0, end)
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
    for i in range(V):
        p[i] = 0.0 if i == UNK else np.exp((np.float64(logits[i]) - m) / temperature)
    if top_k > 0 or top_p < 1.0:
        order = _descending_order(p)
        s = p.sum()
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
    s = p.sum()
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


@kernel
def generate(cell, E, Wx0, WxR, WhA, WhB, b, peep, bhn, Wy, by, h, c, context, uniforms, temperature, top_k, top_p,
             stop_at_eos, out_tokens, out_logprobs):
    """Feed the tokens of `context` (a prime, or the last token generated) and generate up to
    len(out_tokens) tokens after them. The state h, c holds what came before the context and is
    updated. Returns how many tokens were written (fewer when <EOS> came and stop_at_eos).
    (One kernel for both rather than a separate one to feed the prime: the first sample after an
    install compiles one kernel fewer, 14.0 -> 11.6 s measured.)"""
    V = by.shape[0]
    logits = np.empty(V, dtype=by.dtype)
    for t in range(context.shape[0] - 1):  # the last one is fed with the first choice below
        model_step(cell, context[t], E, Wx0, WxR, WhA, WhB, b, peep, bhn, Wy, by, h, c, logits)
    token = context[context.shape[0] - 1]
    for n in range(out_tokens.shape[0]):
        model_step(cell, token, E, Wx0, WxR, WhA, WhB, b, peep, bhn, Wy, by, h, c, logits)
        token, lp = choose_token(logits, temperature, top_k, top_p, uniforms[n])
        out_tokens[n] = token
        out_logprobs[n] = lp
        if stop_at_eos and token == EOS:
            return n + 1
    return out_tokens.shape[0]
