"""Heads: what a model predicts from its stack's outputs.

The language-model head predicts the next token at every position (the notes' output layer):

    ŷ<t> = softmax(W_y h<t> + b_y),   L<t> = -log ŷ<t>[y<t>]

Parameters output.W (H, V) and output.b (V,); with tied weights output.W is absent and E^T is used
(the embedding's gradient then receives the output layer's too). A large vocabulary's head may be
an adaptive softmax instead (adaptive.py: the same methods, exact probabilities).

The task models (tasks/models.py) put a label head over their stack's output (T, B, width):
  - `SequenceLabelHead` (many-to-one): ŷ = softmax(W_c [h_fwd<T>; h_rev<1>] + b_c), the final state
    of each direction side by side; the loss reaches the stack only through those two positions.
  - `TagHead` (many-to-many, T_x = T_y): ŷ<t> = softmax(W_t [h_fwd<t>; h_rev<t>] + b_t) at every
    position, no shift between inputs and targets.
Both have output.W (width, C) and output.b (C,). An encoder–decoder's head is the language-model
head over its decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnncli.execution.cores import rows_product
from rnncli.kernels.blas import matmul
from rnncli.kernels.output import log_softmax_rows, softmax_cross_entropy, target_logprobs


@dataclass
class HeadCache:
    top: np.ndarray  # (T*B, H) the head's input
    dlogits: np.ndarray  # (T*B, V) gradient of the mean loss w.r.t. the logits


class LanguageModelHead:
    def __init__(self, hidden: int, vocab_size: int, tie_weights: bool):
        self.H, self.V, self.tied = hidden, vocab_size, tie_weights

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return ({} if self.tied else {"output.W": (self.H, self.V)}) | {"output.b": (self.V,)}

    def init_params(self, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
        params = {}
        if not self.tied:
            bound = 1.0 / np.sqrt(self.H)
            params["output.W"] = rng.uniform(-bound, bound, (self.H, self.V)).astype(dtype)
        params["output.b"] = np.zeros(self.V, dtype=dtype)
        return params

    def weight(self, params: dict) -> np.ndarray:
        """W_y (H, V)."""
        return params["embed.weight"].T if self.tied else params["output.W"]

    def logits(self, params: dict, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """top (T, B, H) -> its rows (T*B, H) and the logits (T*B, V), one product."""
        T, B, H = top.shape
        flat = top.reshape(T * B, H)
        logits = rows_product(flat, self.weight(params))  # a row's logits never depend on the rows beside it
        logits += params["output.b"]
        return flat, logits

    def loss(self, params: dict, top: np.ndarray, targets: np.ndarray) -> tuple[float, HeadCache]:
        """Mean cross-entropy (nats per token) of targets (T, B)."""
        flat, logits = self.logits(params, top)
        loss, dlogits = softmax_cross_entropy(logits, targets.reshape(-1))
        return loss, HeadCache(flat, dlogits)

    def backward(self, params: dict, cache: HeadCache, T: int, B: int):
        """-> gradients of output.b and output.W; the embedding's share when tied (W_y's gradient
        transposed: the caller adds it), else None; and dtop (T, B, H)."""
        dW = matmul(cache.top.T, cache.dlogits)  # (H, V)
        grads = {"output.b": cache.dlogits.sum(axis=0)} | ({} if self.tied else {"output.W": dW})
        dtop = rows_product(cache.dlogits, self.weight(params).T).reshape(T, B, -1)
        return grads, dW.T if self.tied else None, dtop

    def target_logprobs(self, params: dict, top: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """log ŷ<t>[y<t>] for targets (T, B) -> (T, B)."""
        _, logits = self.logits(params, top)
        return target_logprobs(logits, targets.reshape(-1)).reshape(targets.shape)

    def next_token_logprobs(self, params: dict, top: np.ndarray) -> np.ndarray:
        """The whole distribution log ŷ<t> (T, B, V)."""
        T, B, _ = top.shape
        _, logits = self.logits(params, top)
        return log_softmax_rows(logits).reshape(T, B, -1)

    def step_weights(self, params: dict, hold, packed):
        """What the single step's output layer reads: W_y held as the step holds its matrices, b_y."""
        return hold(self.weight(params), packed), np.ascontiguousarray(params["output.b"])


class _LabelHead:
    """output.W (width, C), output.b (C,) over rows of features taken from the stack's output."""

    def __init__(self, width: int, classes: int, hidden: int, bidirectional: bool):
        self.width, self.classes, self.H, self.bidirectional = width, classes, hidden, bidirectional

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"output.W": (self.width, self.classes), "output.b": (self.classes,)}

    def init_params(self, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
        bound = 1.0 / np.sqrt(self.width)
        return {"output.W": rng.uniform(-bound, bound, (self.width, self.classes)).astype(dtype),
                "output.b": np.zeros(self.classes, dtype)}

    def features(self, top: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def dtop(self, dfeatures: np.ndarray, T: int) -> np.ndarray:
        """The gradient of the stack's output from the features' (the inverse of `features`)."""
        raise NotImplementedError

    def logits(self, params: dict, features: np.ndarray) -> np.ndarray:
        out = rows_product(features, params["output.W"])
        out += params["output.b"]
        return out

    def backward(self, params: dict, features: np.ndarray, dlogits: np.ndarray):
        """-> gradients of output.W and output.b, d(features)."""
        return ({"output.W": matmul(np.ascontiguousarray(features).T, dlogits), "output.b": dlogits.sum(axis=0)},
                rows_product(dlogits, params["output.W"].T))


class SequenceLabelHead(_LabelHead):
    """One label per sequence, from the final states: (h_fwd<T>; h_rev<1>) -> (B, C)."""

    batch_axis = 0  # of its log-probabilities (B, C)

    def shaped(self, rows: np.ndarray, top: np.ndarray) -> np.ndarray:
        """Its rows of log-probabilities (B, C) as they are."""
        return rows

    def features(self, top: np.ndarray) -> np.ndarray:
        if not self.bidirectional:
            return top[-1]
        return np.concatenate([top[-1, :, :self.H], top[0, :, self.H:]], axis=1)  # (B, 2H)

    def dtop(self, dfeatures: np.ndarray, T: int) -> np.ndarray:
        B, W = dfeatures.shape
        dtop = np.zeros((T, B, W), dfeatures.dtype)
        dtop[-1, :, :self.H] = dfeatures[:, :self.H]
        if self.bidirectional:
            dtop[0, :, self.H:] += dfeatures[:, self.H:]
        return dtop


class TagHead(_LabelHead):
    """A tag at every position: (T, B, width) -> (T*B, C)."""

    batch_axis = 1  # of its log-probabilities (T, B, C)

    def shaped(self, rows: np.ndarray, top: np.ndarray) -> np.ndarray:
        """Its rows of log-probabilities (T*B, C) as (T, B, C)."""
        return rows.reshape(top.shape[0], top.shape[1], -1)

    def features(self, top: np.ndarray) -> np.ndarray:
        return top.reshape(-1, top.shape[2])

    def dtop(self, dfeatures: np.ndarray, T: int) -> np.ndarray:
        return dfeatures.reshape(T, -1, dfeatures.shape[1])
