"""A model: embedding -> stack of recurrent layers -> head. Nothing cell-specific, nothing
task-specific lives here: the cell is resolved once from its name (kernels/cells.py), the layers
and the stack are in layers.py, the head in heads.py.

    x<t> = E[y<t-1>]                       embedding (V, D)
    h[l]<t> = cell(h[l]<t-1>, in[l]<t>)     the stack
    ŷ<t> = softmax(W_y dropout(h[L-1]<t>) + b_y)    the language-model head (dropout: training only)

Parameters live in one flat mapping with stable dotted names, which checkpoints store as they are:
    embed.weight (V, D); layers.{l}.Wx, layers.{l}.Wh, layers.{l}.b, ... (the cell's); output.W, output.b
    (or an adaptive softmax's output.head.*, output.tail.*: adaptive.py).
When the vocabulary is smaller than a chunk (V < T*B), the first layer's input projection is
looked up per token instead of computed per position (`_input_table`): the same maths, less work.

This module knows no files; it is pure array maths over `params`. It trusts its configuration:
configurations are checked once, where they enter (config.py's `check`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnncli.config import ModelConfig
from rnncli.execution.cores import (
    PackedOnce,
    ShardedCache,
    batch_shards,
    gradients_by_shards,
    joined_states,
    loss_by_shards,
    mask_rows,
    rows_product,
    state_rows,
)
from rnncli.kernels.blas import matmul
from rnncli.kernels.cells import get_cell
from rnncli.kernels.output import embedding_backward, embedding_forward, embedding_row_gradient
from rnncli.kernels.recurrent import Packing, State, hold, inputs_table
from rnncli.models.adaptive import AdaptiveCache, AdaptiveHead
from rnncli.models.heads import HeadCache, LanguageModelHead
from rnncli.models.layers import Stack

Params = dict[str, np.ndarray]
ModelState = list[State]  # one State per layer


@dataclass
class Cache:
    inputs: np.ndarray  # (T, B) token ids fed in
    layer_caches: list
    head: HeadCache | AdaptiveCache
    masks: list | None
    projected: bool  # the first layer's input came from the per-token table
    dstate0: list | None = None  # filled by backward: gradient of the loss w.r.t. each layer's initial state


class Model:
    """The language model of a ModelConfig: parameter layout, initialisation, forward and backward
    over a chunk, forward-only scoring and the single step."""

    def __init__(self, config: ModelConfig, shard_batches: bool = True):
        """`shard_batches`: run a batch as one shard per core (cores.py); a model that is part of
        another (the translator's decoder) runs inside its owner's pass instead."""
        self.config = config
        self.shard_batches = shard_batches
        self.cell = get_cell(config.cell)
        self.stack = Stack(self.cell, config.layers, config.embed, config.hidden, config.dropout)
        self.head = AdaptiveHead(config.hidden, config.vocab_size, config.cutoffs, config.div_value) \
            if config.softmax == "adaptive" else LanguageModelHead(config.hidden, config.vocab_size, config.tie_weights)
        # each kind of sharded pass's weights, packed once for its shards (cores.PackedOnce)
        self.packs = {"forward": PackedOnce(), "backward": PackedOnce(), "forward only": PackedOnce()}

    # ---- parameters and state ----------------------------------------------------------------

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        c = self.config
        return {"embed.weight": (c.vocab_size, c.embed), **self.stack.param_shapes(), **self.head.param_shapes()}

    def state_arrays(self) -> int:
        """Arrays in each layer's state: 1 (h) or 2 (h, c)."""
        return self.cell.state_size

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> Params:
        c = self.config
        embed = rng.normal(0.0, 1.0 if not c.tie_weights else 0.1, (c.vocab_size, c.embed)).astype(dtype)
        return {"embed.weight": embed, **self.stack.init_params(rng, dtype), **self.head.init_params(rng, dtype)}

    def initial_state(self, B: int, dtype=np.float32) -> ModelState:
        return self.stack.initial_state(B, dtype)

    def dropout_masks(self, rng: np.random.Generator, T: int, B: int, dtype=np.float32):
        return self.stack.dropout_masks(rng, T, B, dtype)

    # ---- over a chunk ------------------------------------------------------------------------

    def _input_table(self, params: Params, positions: int) -> np.ndarray | None:
        """The first layer's input projection for every vocabulary entry, E @ Wx + b (V, G*H), when
        the vocabulary is smaller than the chunk (V < T*B positions), else None. Each position's
        x<t> @ Wx + b is then its token's row: a character model projects 65 rows instead of 3,200
        per chunk, and its backward pass sums the gradient per token before the (then small) products."""
        if self.config.vocab_size >= positions:
            return None
        first = self.stack.layer_params(params, 0)
        table = rows_product(params["embed.weight"], first["Wx"])
        table += first["b"]
        return table

    def _stack_forward(self, params: Params, inputs: np.ndarray, state0: ModelState, masks, keep: bool):
        table = self._input_table(params, inputs.size)
        if table is None:
            x = embedding_forward(params["embed.weight"], inputs)  # (T, B, D)
            top, states, caches = self.stack.forward(params, x, state0, masks, keep)
        else:
            top, states, caches = self.stack.forward(params, None, state0, masks, keep, xw0=table[inputs])
        return top, states, caches, table is not None

    def _shards(self, B: int) -> list[slice]:
        return batch_shards(B) if self.shard_batches else []

    def forward(self, params: Params, inputs: np.ndarray, targets: np.ndarray, state0: ModelState,
                masks=None) -> tuple[float, ModelState, Cache | ShardedCache]:
        """Mean cross-entropy (nats per token) of targets (T, B) given inputs (T, B), the final states
        and the cache for `backward`; by shards of the batch when it has them (`batch_shards`)."""
        shards = self._shards(inputs.shape[1])
        if not shards:
            return self._forward_whole(params, inputs, targets, state0, masks)

        def part(rows: slice):
            return self._forward_whole(params, np.ascontiguousarray(inputs[:, rows]),
                                       np.ascontiguousarray(targets[:, rows]), state_rows(state0, rows),
                                       mask_rows(masks, rows))

        loss, parts, shares = loss_by_shards(shards, part, targets, self.packs["forward"])
        return loss, joined_states([p[1] for p in parts]), ShardedCache(shards, [p[2] for p in parts], shares)

    def _forward_whole(self, params: Params, inputs: np.ndarray, targets: np.ndarray, state0: ModelState,
                       masks=None) -> tuple[float, ModelState, Cache]:
        top, states, caches, projected = self._stack_forward(params, inputs, state0, masks, keep=True)
        loss, head_cache = self.head.loss(params, top, targets)
        return loss, states, Cache(inputs, caches, head_cache, masks, projected)

    def backward(self, params: Params, cache: Cache | ShardedCache) -> Params:
        """Gradients of the mean loss for every parameter (same names as `params`); each layer's
        initial-state gradient goes to `cache.dstate0`."""
        if isinstance(cache, Cache):
            return self._backward_whole(params, cache)
        grads = gradients_by_shards(lambda part: self._backward_whole(params, part), cache, self.packs["backward"])
        cache.dstate0 = joined_states([[tuple(a * a.dtype.type(share) for a in layer) for layer in part.dstate0]
                                       for part, share in zip(cache.parts, cache.shares, strict=True)])
        return grads

    def _backward_whole(self, params: Params, cache: Cache) -> Params:
        T, B = cache.inputs.shape
        V = self.config.vocab_size
        grads, dW, dtop = self.head.backward(params, cache.head, T, B)
        stack_grads, dx, cache.dstate0 = self.stack.backward(params, cache.layer_caches, dtop, cache.masks,
                                                             cache.projected)
        grads.update(stack_grads)
        if cache.projected:  # dx is d(xw) of the first layer, (T, B, G*H): per-token sums first
            first = self.stack.layer_params(params, 0)
            dtable = embedding_backward(cache.inputs, dx, V)  # (V, G*H)
            grads["layers.0.Wx"] = matmul(params["embed.weight"].T, dtable)
            grads["layers.0.b"] = dtable.sum(axis=0)
            dE = rows_product(dtable, first["Wx"].T)
        elif self.config.tie_weights:
            dE = embedding_backward(cache.inputs, np.ascontiguousarray(dx), V)
        else:  # a large vocabulary: only the rows read (the optimizer updates the rest without reading zeros)
            dE = embedding_row_gradient(cache.inputs, dx, V)
        if dW is not None:  # tied: the output layer's share of the embedding's gradient
            dE += dW
        grads["embed.weight"] = dE
        return grads

    # ---- forward only ------------------------------------------------------------------------

    def _forward_only(self, run, inputs: np.ndarray, state0: ModelState, *per_position: np.ndarray):
        """run(inputs, state0, *per_position) -> (out (T, B, ...), final states), by shards of the
        batch when it has them; arrays in `per_position` are (T, B) like the inputs."""
        shards = self._shards(inputs.shape[1])
        if not shards:
            return run(inputs, state0, *per_position)

        def part(rows: slice):
            return run(np.ascontiguousarray(inputs[:, rows]), state_rows(state0, rows),
                       *(np.ascontiguousarray(a[:, rows]) for a in per_position))

        parts = self.packs["forward only"].on_cores(part, shards)
        return np.concatenate([p[0] for p in parts], axis=1), joined_states([p[1] for p in parts])

    def logprobs(self, params: Params, inputs: np.ndarray, targets: np.ndarray,
                 state0: ModelState) -> tuple[np.ndarray, ModelState]:
        """Forward only, keeping no activations: log ŷ<t>[y<t>] for targets (T, B) -> (T, B)."""

        def run(inputs, state0, targets):
            top, states, _, _ = self._stack_forward(params, inputs, state0, None, keep=False)
            return self.head.target_logprobs(params, top, targets), states

        return self._forward_only(run, inputs, state0, targets)

    def next_token_logprobs(self, params: Params, inputs: np.ndarray,
                            state0: ModelState) -> tuple[np.ndarray, ModelState]:
        """Forward only: the whole next-token distribution log ŷ<t> after each input, (T, B, V)."""

        def run(inputs, state0):
            top, states, _, _ = self._stack_forward(params, inputs, state0, None, keep=False)
            return self.head.next_token_logprobs(params, top), states

        return self._forward_only(run, inputs, state0)

    def activations(self, params: Params, inputs: np.ndarray,
                    state0: ModelState) -> tuple[list[tuple[np.ndarray, object]], ModelState]:
        """Forward only, keeping what each layer computed (to look inside a model, explain.py): per
        layer (hs (T, B, H), what its cell saved for backward: its gates), and the final states."""
        _, states, caches, _ = self._stack_forward(params, inputs, state0, None, keep=True)
        return [(cache[2], cache[3]) for cache in caches], states

    # ---- the single step (generation, beam search) -------------------------------------------

    def step_weights(self, params: Params, packed: Packing = True):
        """Everything the single-step kernels read: (the cell's stacked weights, E, W_y held, b_y)
        (an adaptive softmax: its head's matrix held and the rest, adaptive.py),
        each matrix a step multiplies by held in the form `packed` (recurrent.Packing: packed, for
        steps on one core; or packed and shared with a helper on the second core) that the engine
        chose (execution/steps.py); E the embedding, or where that pays the table of each token's
        first-layer input product (recurrent.inputs_table: the same numbers)."""
        c = np.ascontiguousarray
        E, weights = inputs_table(c(params["embed.weight"]), self.stack.step_weights(params, packed))
        return weights, E, *self.head.step_weights(params, hold, packed)

    def step_state(self, state: ModelState) -> tuple[np.ndarray, np.ndarray]:
        """A per-layer state as the kernels' arrays h, c (L, B, H)."""
        h = np.stack([s[0] for s in state])
        c = np.stack([s[1] for s in state]) if self.cell.state_size > 1 else np.zeros_like(h)
        return h, c

    def from_step_state(self, h: np.ndarray, c: np.ndarray) -> ModelState:
        return [(h[i],) if self.cell.state_size == 1 else (h[i], c[i]) for i in range(h.shape[0])]

    def step(self, params: Params, tokens: np.ndarray, state: ModelState,
             weights=None) -> tuple[np.ndarray, ModelState]:
        """One step: tokens (B,) -> logits (B, V), new state. `weights` (from `step_weights`) saves
        restacking them at every call."""
        from rnncli.kernels.generate import model_step

        h, c = self.step_state(state)
        logits = model_step(*(weights or self.step_weights(params)), np.asarray(tokens, np.int64), h, c)
        return logits, self.from_step_state(h, c)
