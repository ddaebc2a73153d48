"""The adaptive softmax (Grave et al. 2017, PyTorch's nn.AdaptiveLogSoftmaxWithLoss): an exact,
normalised output layer for a large vocabulary, at a fraction of the dense layer's work.

The vocabulary is ordered by frequency (the word tokenizer's ids, by count; sentencepiece's by piece
score or merge order, which follow it; <UNK> = 0 and <EOS> = 1 first, in the head's shortlist; the
probabilities are exact whatever the order, only the speed depends on it) and cut at `cutoffs`
c_1 < c_2 < ... < c_K into a head's shortlist [0, c_1) and K tail clusters [c_i, c_{i+1})
(c_{K+1} = V). The head scores its shortlist and one entry per cluster; tail
i projects h to d_i = H // div^i dimensions, then scores its own words:

    log p(w | h) = log softmax(W_head h + b_head)[w]                                  w < c_1
    log p(w | h) = log softmax(W_head h + b_head)[c_1 + i - 1]
                   + log softmax(W_out,i (W_proj,i h))[w - c_i]                        w in cluster i

Each row sums to 1 over the vocabulary: the head's entries sum to 1, and each cluster entry's mass
is spread by a softmax of its own. Per token the head costs H (c_1 + K) and a tail H d_i + d_i o_i
(o_i its size) where the dense layer costs H V; training and scoring compute a tail only for the
rows whose target is in it, the whole distribution (sampling, beam, explain) computes every tail.

Parameters (PyTorch's names beside, formats/interop.py):
    output.head.W        (H, c_1 + K)   head.weight transposed
    output.head.b        (c_1 + K,)     head.bias (head_bias=True)
    output.tail.{i}.proj.W  (H, d_i)    tail.{i}.0.weight transposed
    output.tail.{i}.out.W   (d_i, o_i)  tail.{i}.1.weight transposed
Every product whose rows are positions goes through `rows_product` (a row's numbers never depend
on the rows beside it); the weight gradients sum over rows, as the dense head's do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnncli.execution.cores import rows_product
from rnncli.kernels.blas import matmul
from rnncli.kernels.output import log_softmax_rows, softmax_cross_entropy, target_logprobs

DEFAULT_CUTOFFS = (2000, 10000, 50000)  # the head's shortlist, then cluster starts, when the vocabulary has them


def default_cutoffs(V: int) -> list[int]:
    """The cutoffs of a vocabulary of V entries when none are given: those of DEFAULT_CUTOFFS that
    leave each cluster a word, or, below 2,001 entries, a shortlist of a quarter of it."""
    chosen = [c for c in DEFAULT_CUTOFFS if c < V]
    return chosen or [max(2, V // 4)]


def tail_dims(hidden: int, clusters: int, div_value: float) -> list[int]:
    """d_i = H // div^i of tail i = 1..K (PyTorch's `in_features // div_value ** (i + 1)`)."""
    return [int(hidden // div_value ** (i + 1)) for i in range(clusters)]


def cutoff_problem(V: int, hidden: int, cutoffs: list[int], div_value: float) -> str | None:
    """Why cutoffs and div_value do not fit a vocabulary of V and a hidden size, or None."""
    if not cutoffs or any(not isinstance(c, int) or isinstance(c, bool) for c in cutoffs):
        return "must be one or more whole numbers"
    if cutoffs[0] < 2:
        return f"must start at 2 or more (the shortlist holds <UNK> and <EOS>), not {cutoffs[0]}"
    if any(b <= a for a, b in zip(cutoffs, cutoffs[1:], strict=False)):
        return f"must increase, not {','.join(map(str, cutoffs))}"
    if cutoffs[-1] >= V:
        return f"must all be below the vocabulary size ({V:,}), each cluster holding a word; {cutoffs[-1]:,} is not"
    dims = tail_dims(hidden, len(cutoffs), div_value)
    if dims[-1] < 1:
        return (f"leave cluster {len(cutoffs)} no dimension with hidden {hidden} and div value {div_value:g} "
                f"({hidden} // {div_value:g}^{len(cutoffs)} = 0): fewer cutoffs or a smaller --div-value")
    return None


def torch_names(config, module: str) -> list[tuple[str, str]]:
    """(rnncli name, PyTorch name) of an adaptive softmax's parameters, the module at `module`
    (nn.AdaptiveLogSoftmaxWithLoss: head.weight, head.bias, tail.{i}.0.weight, tail.{i}.1.weight);
    matrices transpose."""
    clusters = len(config.cutoffs or default_cutoffs(config.vocab_size))
    names = [("output.head.W", f"{module}.head.weight"), ("output.head.b", f"{module}.head.bias")]
    for i in range(clusters):
        names += [(f"output.tail.{i}.proj.W", f"{module}.tail.{i}.0.weight"),
                  (f"output.tail.{i}.out.W", f"{module}.tail.{i}.1.weight")]
    return names


@dataclass
class AdaptiveCache:
    top: np.ndarray  # (N, H) the head's input
    dhead: np.ndarray  # (N, c_1 + K) gradient of the mean loss w.r.t. the head's logits
    tails: list  # per cluster: (its rows, their projections (n, d_i), gradient w.r.t. its logits (n, o_i))


class AdaptiveHead:
    """The language model's output layer as an adaptive softmax (the methods of heads.LanguageModelHead)."""

    tied = False

    def __init__(self, hidden: int, vocab_size: int, cutoffs: list[int], div_value: float):
        self.H, self.V = hidden, vocab_size
        self.cutoffs = list(cutoffs) or default_cutoffs(vocab_size)
        self.bounds = [*self.cutoffs, vocab_size]  # cluster i (1..K) holds [bounds[i-1], bounds[i])
        self.shortlist, self.K = self.cutoffs[0], len(self.cutoffs)
        self.dims = tail_dims(hidden, self.K, div_value)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"output.head.W": (self.H, self.shortlist + self.K), "output.head.b": (self.shortlist + self.K,)}
        for i, d in enumerate(self.dims):
            shapes[f"output.tail.{i}.proj.W"] = (self.H, d)
            shapes[f"output.tail.{i}.out.W"] = (d, self.bounds[i + 1] - self.bounds[i])
        return shapes

    def init_params(self, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
        """Each matrix uniform in +-1/sqrt(its inputs) (PyTorch's nn.Linear); the head's bias zero."""
        params = {}
        for name, shape in self.param_shapes().items():
            if name.endswith(".b"):
                params[name] = np.zeros(shape, dtype)
            else:
                bound = 1.0 / np.sqrt(shape[0])
                params[name] = rng.uniform(-bound, bound, shape).astype(dtype)
        return params

    def tail(self, params: dict, i: int) -> tuple[np.ndarray, np.ndarray]:
        return params[f"output.tail.{i}.proj.W"], params[f"output.tail.{i}.out.W"]

    def _head_logits(self, params: dict, flat: np.ndarray) -> np.ndarray:
        logits = rows_product(flat, params["output.head.W"])
        logits += params["output.head.b"]
        return logits

    def clusters(self, targets: np.ndarray) -> np.ndarray:
        """Each target's cluster: 0 in the shortlist, i in tail i."""
        return np.searchsorted(np.asarray(self.cutoffs), targets, side="right")

    def _head_targets(self, targets: np.ndarray, clusters: np.ndarray) -> np.ndarray:
        """A target's entry in the head: itself in the shortlist, its cluster's entry c_1 + i - 1 else."""
        return np.where(clusters == 0, targets, self.shortlist + clusters - 1)

    def loss(self, params: dict, top: np.ndarray, targets: np.ndarray) -> tuple[float, AdaptiveCache]:
        """Mean cross-entropy (nats per token) of targets (T, B), and what backward needs: the
        gradient w.r.t. every logit computed (the head's, and each tail's at its rows)."""
        flat = np.ascontiguousarray(top.reshape(-1, top.shape[-1]))
        y = targets.reshape(-1)
        N = len(y)
        clusters = self.clusters(y)
        loss, dhead = softmax_cross_entropy(self._head_logits(params, flat), self._head_targets(y, clusters))
        tails = []
        for i in range(self.K):
            rows = np.flatnonzero(clusters == i + 1)
            if rows.size == 0:
                continue
            proj_W, out_W = self.tail(params, i)
            projected = rows_product(flat[rows], proj_W)
            part, dlogits = softmax_cross_entropy(rows_product(projected, out_W), y[rows] - self.bounds[i])
            dlogits *= dlogits.dtype.type(rows.size / N)  # its rows' mean -> their share of the batch's
            loss += part * rows.size / N
            tails.append((i, rows, projected, dlogits))
        return loss, AdaptiveCache(flat, dhead, tails)

    def backward(self, params: dict, cache: AdaptiveCache, T: int, B: int):
        """-> the gradients of every output.* parameter, None (no share for a tied embedding), and
        dtop (T, B, H)."""
        flat = cache.top
        grads = {"output.head.W": matmul(flat.T, cache.dhead), "output.head.b": cache.dhead.sum(axis=0)}
        dtop = rows_product(cache.dhead, params["output.head.W"].T)
        for i in range(self.K):
            grads[f"output.tail.{i}.proj.W"] = np.zeros(params[f"output.tail.{i}.proj.W"].shape, flat.dtype)
            grads[f"output.tail.{i}.out.W"] = np.zeros(params[f"output.tail.{i}.out.W"].shape, flat.dtype)
        for i, rows, projected, dlogits in cache.tails:
            proj_W, out_W = self.tail(params, i)
            grads[f"output.tail.{i}.out.W"] = matmul(projected.T, dlogits)
            dprojected = rows_product(dlogits, out_W.T)
            grads[f"output.tail.{i}.proj.W"] = matmul(flat[rows].T, dprojected)
            dtop[rows] += rows_product(dprojected, proj_W.T)
        return grads, None, dtop.reshape(T, B, -1)

    def target_logprobs(self, params: dict, top: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """log p(y<t> | h<t>) for targets (T, B) -> (T, B): the head, and each tail at its rows only."""
        flat = np.ascontiguousarray(top.reshape(-1, top.shape[-1]))
        y = targets.reshape(-1)
        clusters = self.clusters(y)
        out = target_logprobs(self._head_logits(params, flat), self._head_targets(y, clusters))
        for i in range(self.K):
            rows = np.flatnonzero(clusters == i + 1)
            if rows.size:
                out[rows] += target_logprobs(self._tail_logits(params, i, flat[rows]), y[rows] - self.bounds[i])
        return out.reshape(targets.shape)

    def _tail_logits(self, params: dict, i: int, rows: np.ndarray) -> np.ndarray:
        proj_W, out_W = self.tail(params, i)
        return rows_product(rows_product(rows, proj_W), out_W)

    def next_token_logprobs(self, params: dict, top: np.ndarray) -> np.ndarray:
        """The whole distribution log p(. | h<t>) (T, B, V): every tail at every row."""
        T, B, H = top.shape
        flat = np.ascontiguousarray(top.reshape(T * B, H))
        head = log_softmax_rows(self._head_logits(params, flat))
        out = np.empty((T * B, self.V), flat.dtype)
        out[:, : self.shortlist] = head[:, : self.shortlist]
        for i in range(self.K):
            tail = log_softmax_rows(self._tail_logits(params, i, flat))
            tail += head[:, self.shortlist + i, None]
            out[:, self.bounds[i]: self.bounds[i + 1]] = tail
        return out.reshape(T, B, self.V)

    def step_weights(self, params: dict, hold, packed):
        """What the single step's output layer reads (kernels/generate.py's `output_layer`): the head's
        matrix held as the step holds its matrices, and (its bias, the cluster bounds, each tail's
        two matrices held)."""
        from rnncli.kernels.next_token import AdaptiveOutput

        c = np.ascontiguousarray
        return hold(params["output.head.W"], packed), AdaptiveOutput(
            c(params["output.head.b"]), np.asarray(self.bounds, np.int64),
            tuple(hold(params[f"output.tail.{i}.proj.W"], packed) for i in range(self.K)),
            tuple(hold(params[f"output.tail.{i}.out.W"], packed) for i in range(self.K)))
