"""Heads: what a model predicts from its stack's outputs.

The language-model head predicts the next token at every position (the notes' output layer):

    ŷ<t> = softmax(W_y h<t> + b_y),   L<t> = -log ŷ<t>[y<t>]

Parameters output.W (H, V) and output.b (V,); with tied weights output.W is absent and E^T is used
(the embedding's gradient then receives the output layer's too).

The other tasks (#11) are heads of the same shape over the same stack:
  - sequence label (many-to-one): softmax(W h<T> + b) over classes from the final state (both
    directions' final states side by side when bidirectional); the loss reaches the stack only
    through the last position's dtop (and the reversed layer's first).
  - per-token tag (many-to-many, T_x = T_y): this head with a tag vocabulary instead of V and no
    shift between inputs and targets.
  - encoder–decoder: an encoder stack whose final states are the decoder stack's initial states,
    and this head over the decoder; the decoder's initial-state gradients (Stack.backward returns
    them) flow back into the encoder's final states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
        logits = matmul(flat, self.weight(params))
        logits += params["output.b"]
        return flat, logits

    def loss(self, params: dict, top: np.ndarray, targets: np.ndarray) -> tuple[float, HeadCache]:
        """Mean cross-entropy (nats per token) of targets (T, B)."""
        flat, logits = self.logits(params, top)
        loss, dlogits = softmax_cross_entropy(logits, targets.reshape(-1))
        return loss, HeadCache(flat, dlogits)

    def backward(self, params: dict, cache: HeadCache, T: int, B: int):
        """-> gradients of output.b and of W_y (H, V) (the caller files it under output.W or, tied,
        adds its transpose to the embedding's), and dtop (T, B, H)."""
        dW = matmul(cache.top.T, cache.dlogits)  # (H, V)
        db = cache.dlogits.sum(axis=0)
        dtop = matmul(cache.dlogits, self.weight(params).T).reshape(T, B, -1)
        return {"output.b": db}, dW, dtop

    def target_logprobs(self, params: dict, top: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """log ŷ<t>[y<t>] for targets (T, B) -> (T, B)."""
        _, logits = self.logits(params, top)
        return target_logprobs(logits, targets.reshape(-1)).reshape(targets.shape)

    def next_token_logprobs(self, params: dict, top: np.ndarray) -> np.ndarray:
        """The whole distribution log ŷ<t> (T, B, V)."""
        T, B, _ = top.shape
        _, logits = self.logits(params, top)
        return log_softmax_rows(logits).reshape(T, B, -1)
