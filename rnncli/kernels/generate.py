"""The whole model's single step inside Numba, and batch-1 generation: the step and the choice of
the next token for many tokens per call, so Python runs once per call rather than once per token.

The recurrent layers run their cell's own single step (`layer_step`, registered by each cell
module for its named tuple of stacked weights, see recurrent.py): these kernels are compiled for
one cell at a time, the one whose weights they are given. The other arguments:
    E (V, D) embedding, Wy (H, V) and by (V,) the output layer,
    h, c (L, B, H): the state, updated in place (c is unused by cells without a memory cell).
"""

import numpy as np

from rnncli.kernels.jit import inline, kernel
from rnncli.kernels.recurrent import add_row, run_stack_step, step_times

UNK = 0
EOS = 1


@kernel
def model_step(weights, E, Wy, by, Wy_packed, tokens, h, c):
    """Feed tokens (B,): -> next-token logits (B, V); h, c updated in place (generation, Model.step)."""
    x = np.empty((tokens.shape[0], E.shape[1]), dtype=E.dtype)
    for b in range(tokens.shape[0]):
        for d in range(E.shape[1]):  # element by element: a row assigned whole compiles a ~1 s error path
            x[b, d] = E[tokens[b], d]
    logits = step_times(run_stack_step(weights, x, h, c), Wy, Wy_packed)
    add_row(logits, by)
    return logits


# The same step, Numba-inlined into `generate`: called there as the kernel above, its code was
# optimised and turned into machine code twice (alone, then linked into generate), ~1.5 s of a
# first sample's compile.
_model_step_inline = inline(model_step.py_func)


@inline
def _descending_order(p):
    """Indices of p from its largest value to its smallest, by heapsort: a min-heap of the indices
    is built (roots n//2-1 ... 0 sifted down), then its smallest is swapped to the end, one at a
    time, which leaves the largest first. One loop holds both phases so that the sift-down is
    written once. (np.argsort does the same but takes ~1.3 s to compile, and this kernel is
    compiled on the first sample after an install.)"""
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
        while True:  # sift order[root] down within order[:end]
            child = 2 * root + 1
            if child >= end:
                break
            if child + 1 < end and p[order[child + 1]] < p[order[child]]:
                child += 1
            if p[order[child]] >= p[order[root]]:
                break
            order[root], order[child] = order[child], order[root]
            root = child
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


@kernel
def generate(weights, E, Wy, by, Wy_packed, h, c, context, uniforms, temperature, top_k, top_p, stop_at_eos, finished,
             out_tokens, out_logprobs):
    """N sequences side by side (N = 1 for a single sample): feed each row its column of `context`
    (T, N) (a prime, or the last token generated), then choose up to n = out_tokens.shape[1] tokens
    per row, row b's step s with uniforms[b, s]. The state h, c (L, N, H) holds what came before the
    context and is updated. Each step is one batched model step: N rows share one pass over the weights.

    finished (N,) marks rows that produced <EOS> (when stop_at_eos): they are stepped with the others
    but their tokens are not used. Returns how many steps were taken: fewer than n when every row has
    finished. (One kernel for feeding and generating, and for every N, so that the first sample after
    an install compiles one kernel.)"""
    N = context.shape[1]
    T = context.shape[0]
    token = np.empty(N, dtype=context.dtype)
    for b in range(N):
        token[b] = context[0, b]
    for s in range(T - 1 + out_tokens.shape[1]):  # one call site of the step: it is compiled once
        logits = _model_step_inline(weights, E, Wy, by, Wy_packed, token, h, c)  # (N, V)
        if s + 1 < T:  # still feeding the context: its next token
            for b in range(N):
                token[b] = context[s + 1, b]
            continue
        n = s - (T - 1)
        running = 0
        for b in range(N):
            chosen, lp = choose_token(logits[b], temperature, top_k, top_p, uniforms[b, n])
            token[b] = chosen
            out_tokens[b, n] = chosen
            out_logprobs[b, n] = lp
            if stop_at_eos and chosen == EOS:
                finished[b] = True
            if not finished[b]:
                running += 1
        if running == 0:
            return n + 1
    return out_tokens.shape[1]
