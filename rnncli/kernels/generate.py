"""The whole model's single step inside Numba, and batch-1 generation: the step and the choice of
the next token for many tokens per call, so Python runs once per call rather than once per token.

The recurrent layers run their cell's own single step (`layer_step`, registered by each cell
module for its named tuple of stacked weights, see recurrent.py): these kernels are compiled for
one cell at a time, the one whose weights they are given. The other arguments:
    E (V, D) embedding, Wy (H, V) held as the step holds its matrices (recurrent.hold) and by (V,):
    the output layer; or, for an adaptive softmax (models/adaptive.py), Wy its head's matrix held
    and by an `AdaptiveOutput` (kernels/next_token.py: the output layer and the choice of a token),
    h, c (L, B, H): the state, updated in place (c is unused by cells without a memory cell).
"""

import numpy as np

from rnncli.kernels.jit import inline, kernel
from rnncli.kernels.next_token import EOS, UNK, _descending_order, _ranks_before, _sift_down, next_tokens, output_layer
from rnncli.kernels.recurrent import run_stack_step


def stack_top(weights, E, tokens, h, c):
    """Feed tokens (B,) through the stack: -> its top layer's output (B, H); h, c updated in place."""
    x = np.empty((tokens.shape[0], E.shape[1]), dtype=E.dtype)
    # The token read once per row: read inside the loop, the copy did not vectorise (16 rows of 2,048:
    # 12.6 -> 1.8 us). Element by element: a row assigned whole compiles a ~1 s error path.
    for b in range(tokens.shape[0]):
        token = tokens[b]
        for d in range(E.shape[1]):
            x[b, d] = E[token, d]
    return run_stack_step(weights, x, h, c)


# Numba-inlined where it is called: called as a kernel of its own, its code was optimised and
# turned into machine code twice (alone, then linked into its caller), ~1.5 s of a first sample's compile.
_stack_top = inline(stack_top)


@kernel
def model_step(weights, E, Wy, by, tokens, h, c):
    """Feed tokens (B,): -> next-token logits (B, V); h, c updated in place (beam search, Model.step)."""
    return output_layer(_stack_top(weights, E, tokens, h, c), Wy, by)


@kernel
def generate(weights, E, Wy, by, h, c, context, uniforms, temperature, top_k, top_p, stop_at_eos, finished, out_tokens,
             out_logprobs):
    """N sequences side by side (N = 1 for a single sample): feed each row its column of `context`
    (T, N) (a prime, or the last token generated), then choose up to n = out_tokens.shape[1] tokens
    per row, row b's step s with uniforms[b, s] and its own temperature[b], top_k[b], top_p[b]
    (arrays (N,): a server's rows each keep their request's). The state h, c (L, N, H) holds what
    came before the context and is updated. Each step is one batched model step: N rows share one
    pass over the weights.

    finished (N,) marks rows that produced <EOS> (when stop_at_eos): they are stepped with the others
    but their tokens are not used. Returns how many steps were taken: fewer than n when every row has
    finished. (One kernel for feeding and generating, and for every N, so that the first sample after
    an install compiles one kernel.)"""
    N = context.shape[1]
    T = context.shape[0]
    token = np.empty(N, dtype=context.dtype)
    for b in range(N):
        token[b] = context[0, b]
    u = np.empty(N)
    chosen = np.empty(N, dtype=np.int64)
    lp = np.empty(N)
    for s in range(T - 1 + out_tokens.shape[1]):  # one call site of the step: it is compiled once
        top = _stack_top(weights, E, token, h, c)  # (N, H)
        if s + 1 < T:  # still feeding the context: its next token (no output layer needed)
            for b in range(N):
                token[b] = context[s + 1, b]
            continue
        n = s - (T - 1)
        for b in range(N):
            u[b] = uniforms[b, n]
        next_tokens(top, Wy, by, temperature, top_k, top_p, u, chosen, lp)
        running = 0
        for b in range(N):
            token[b] = chosen[b]
            out_tokens[b, n] = chosen[b]
            out_logprobs[b, n] = lp[b]
            if stop_at_eos and chosen[b] == EOS:
                finished[b] = True
            if not finished[b]:
                running += 1
        if running == 0:
            return n + 1
    return out_tokens.shape[1]


@inline
def _walked_before(total, row, rank, other_total, other_row, other_rank):
    """Whether a candidate (its total, its hypothesis, its rank among that hypothesis's tokens)
    comes before another in the beam's walk: the larger total, then the smaller row, then rank."""
    if total != other_total:
        return total > other_total
    return row < other_row or (row == other_row and rank < other_rank)


@kernel
def beam_candidates(logits, scores, width, until_eos):
    """One step of a beam search over W hypotheses (scores (W,): each one's log-probability so far;
    logits (W, V): its next token's). Each hypothesis b proposes its `width` likeliest next tokens
    (ties: the smaller token id first), never <UNK>, a candidate's total being

        scores[b] + log softmax(logits[b])[token],

    and the beam walks all the candidates from the likeliest total (ties: the smaller b, then the
    likelier token): an <EOS> candidate (with `until_eos`) ends its hypothesis, any other extends
    it, the first `width` of them; the walk stops once both have `width` (or at the end).

    The walk costs what it takes, not a sort of every candidate: each hypothesis's tokens wait in a
    heap, its likeliest on top, and a heap of the hypotheses by their next candidate's total merges
    them until `width` extend; the <EOS> candidates (one per hypothesis at most) are sorted on their
    own and kept up to where the walk would have stopped. -> (rows, totals) of the ending
    candidates and (rows, tokens, totals) of the extending ones, each in the walk's order."""
    W, V = logits.shape
    lp = np.empty((W, V))
    tokens = np.empty((W, V), np.int64)  # row b: a heap of b's tokens, its likeliest on top
    head = np.empty(W)  # the total of b's next candidate
    eos_total = np.full(W, -np.inf)  # b's <EOS> candidate, when it is one of b's `width`: its total
    eos_rank = np.zeros(W, np.int64)  # and its rank among them
    for b in range(W):
        m = -np.inf
        for i in range(V):
            m = max(m, np.float64(logits[b, i]))
        s = 0.0
        for i in range(V):
            lp[b, i] = np.float64(logits[b, i]) - m
            s += np.exp(lp[b, i])
        log_s = np.log(s)
        for i in range(V):
            lp[b, i] -= log_s
            tokens[b, i] = i
        lp[b, UNK] = -np.inf
        if until_eos:
            for i in range(V):
                eos_rank[b] += _ranks_before(lp[b], i, EOS)
            if eos_rank[b] < width:
                eos_total[b] = scores[b] + lp[b, EOS]
        for root in range(V // 2 - 1, -1, -1):
            _sift_down(tokens[b], root, V, lp[b], True)
        head[b] = scores[b] + lp[b, tokens[b, 0]]
    rows = np.empty(W, np.int64)  # a heap of the hypotheses with candidates left, the best next one on top
    for b in range(W):
        rows[b] = b
    for root in range(W // 2 - 1, -1, -1):
        _sift_down(rows, root, W, head, True)
    taken = np.zeros(W, np.int64)
    extending_rows, extending_tokens, extending_totals = (np.empty(width, np.int64), np.empty(width, np.int64),
                                                          np.empty(width))
    n = 0
    left = W
    last_rank = 0
    while left > 0 and n < width:
        b = rows[0]
        token = tokens[b, 0]
        if not (until_eos and token == EOS):
            extending_rows[n], extending_tokens[n], extending_totals[n] = b, token, head[b]
            last_rank = taken[b]
            n += 1
        taken[b] += 1
        if taken[b] < width:  # b's next token: its heap's last one on top, sifted down
            size = V - taken[b]
            tokens[b, 0] = tokens[b, size]
            _sift_down(tokens[b], 0, size, lp[b], True)
            head[b] = scores[b] + lp[b, tokens[b, 0]]
        else:  # b has proposed its `width`: the last hypothesis of the heap takes its place
            left -= 1
            rows[0] = rows[left]
        _sift_down(rows, 0, left, head, True)
    order = _descending_order(eos_total)  # the <EOS> candidates in the walk's order (ties: the smaller row)
    ending = 0
    while ending < W and eos_total[order[ending]] > -np.inf:
        e = order[ending]
        if ending >= width and n == width:  # the walk stops at the later of the width-th of each
            x = extending_rows[n - 1]
            if not _walked_before(eos_total[e], e, eos_rank[e], extending_totals[n - 1], x, last_rank):
                break
        ending += 1
    return order[:ending], eos_total[order[:ending]], extending_rows[:n], extending_tokens[:n], extending_totals[:n]
