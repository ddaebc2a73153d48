"""The notes' other shapes of recurrent network, each a model over batches of whole examples:

  classify (many-to-one)      ŷ = softmax(W_c [h_fwd<T>; h_rev<1>] + b_c)   from the final states
  tag (many-to-many, Tx = Ty)  ŷ<t> = softmax(W_t [h_fwd<t>; h_rev<t>] + b_t)  at every position
  translate (Tx != Ty)         an encoder reads the source; its final states (both directions'
                               summed when bidirectional) are the initial states of a decoder, a
                               language model over the target: ŷ<t> = P(y<t> | y<1..t-1>, x)

The language model (the notes' one-to-many) is `model.Model`; the registry's `build_model` (this
package's __init__) gives the model of any configuration.

A batch holds examples of one input length (examples.py groups them), so no input
is padded: h<T> is every example's last state, the reversed layer starts at every example's last
token, and an encoder's final state is exact. Only the decoder's targets are padded at the end,
with target -1, which the loss ignores.

Parameters: embed.weight, layers.{l}[.reverse].* (the encoder stack), output.W (width, C), output.b;
a translator's decoder under decoder.* (decoder.embed.weight, decoder.layers.{l}.*, decoder.output.*).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace

import numpy as np

from rnncli.config import ModelConfig
from rnncli.execution.cores import (
    ShardedCache,
    batch_shards,
    gradients_by_shards,
    loss_by_shards,
    mask_rows,
    on_cores,
)
from rnncli.kernels.blas import one_blas_thread
from rnncli.kernels.cells import get_cell
from rnncli.kernels.output import embedding_row_gradient, log_softmax_rows, softmax_cross_entropy
from rnncli.models.layers import Stack
from rnncli.models.model import Model

Params = dict[str, np.ndarray]


@dataclass
class Batch:
    """Examples of one input length, time-major. targets: classify (B,) class ids; tag (T, B) tag
    ids, -1 where no tag is scored; translate (T', B) target ids, -1 after each target's end, with
    decoder_inputs (T', B) the targets shifted right behind <EOS>."""

    inputs: np.ndarray  # (T, B) token ids
    targets: np.ndarray
    decoder_inputs: np.ndarray | None = None

    @property
    def tokens(self) -> int:
        return int(self.inputs.size)

    def rows(self, rows: slice) -> Batch:
        """The examples at `rows` (the batch axis is the last of every array)."""
        def at(a):
            return None if a is None else np.ascontiguousarray(a[..., rows])

        return Batch(at(self.inputs), at(self.targets), at(self.decoder_inputs))


def sub_params(params: Params, prefix: str) -> Params:
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


class Encoder:
    """Embedding -> stack (bidirectional or not), over a batch of whole examples."""

    def __init__(self, config: ModelConfig):
        self.config = config
        self.cell = get_cell(config.cell)
        self.stack = Stack(self.cell, config.layers, config.embed, config.hidden, config.dropout,
                           config.bidirectional)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"embed.weight": (self.config.vocab_size, self.config.embed), **self.stack.param_shapes()}

    def init_params(self, rng: np.random.Generator, dtype) -> Params:
        embed = rng.normal(0.0, 1.0, (self.config.vocab_size, self.config.embed)).astype(dtype)
        return {"embed.weight": embed, **self.stack.init_params(rng, dtype)}

    def forward(self, params: Params, inputs: np.ndarray, masks=None, keep: bool = True):
        """inputs (T, B) -> top (T, B, width), final states (one per layer), stack caches."""
        B = inputs.shape[1]
        dtype = params["embed.weight"].dtype
        x = params["embed.weight"][inputs]
        return self.stack.forward(params, x, self.stack.initial_state(B, dtype), masks, keep)

    def backward(self, params: Params, inputs: np.ndarray, caches, dtop: np.ndarray, masks=None,
                 dstatesT: list | None = None) -> Params:
        grads, dx, _ = self.stack.backward(params, caches, dtop, masks, dstatesT=dstatesT)
        grads["embed.weight"] = embedding_row_gradient(inputs, dx, self.config.vocab_size)
        return grads


@dataclass
class TaskCache:
    batch: Batch
    masks: list | None
    caches: list
    features: np.ndarray
    dlogits: np.ndarray


class LabelModel:
    """Classifier and tagger: an encoder and a label head over its output (heads.py): one label per
    sequence (classify, the notes' many-to-one) or one per position (tag, many-to-many T_x = T_y)."""

    def __init__(self, config: ModelConfig, head):
        """`head`: the task's label head class (heads.py), given by the task (classify.py, tag.py)."""
        self.config = config
        self.cell = get_cell(config.cell)
        self.encoder = Encoder(config)
        self.head = head(self.encoder.stack.width, len(config.labels), config.hidden, config.bidirectional)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {**self.encoder.param_shapes(), **self.head.param_shapes()}

    def state_arrays(self) -> int:
        return self.cell.state_size

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> Params:
        return {**self.encoder.init_params(rng, dtype), **self.head.init_params(rng, dtype)}

    def dropout_masks(self, rng: np.random.Generator, batch: Batch, dtype=np.float32):
        T, B = batch.inputs.shape
        return self.encoder.stack.dropout_masks(rng, T, B, dtype)

    def threads(self):
        """A bidirectional label model's batch too small for shards (cores.py) runs its two directions
        side by side, one core each, with BLAS on one thread over the whole pass: see blas.py."""
        return one_blas_thread() if self.config.bidirectional else nullcontext()

    def forward(self, params: Params, batch: Batch, masks=None) -> tuple[float, TaskCache | ShardedCache]:
        """Mean cross-entropy of the batch's targets (classify (B,), tag (T, B)), and the cache; by
        shards of the batch's rows when it has them (cores.py)."""
        shards = batch_shards(batch.inputs.shape[1])
        if not shards:
            return self._forward_whole(params, batch, masks)
        loss, parts, shares = loss_by_shards(
            shards, lambda rows: self._forward_whole(params, batch.rows(rows), mask_rows(masks, rows)), batch.targets)
        return loss, ShardedCache(shards, [p[1] for p in parts], shares)

    def _forward_whole(self, params: Params, batch: Batch, masks=None) -> tuple[float, TaskCache]:
        with self.threads():
            top, _, caches = self.encoder.forward(params, batch.inputs, masks)
            features = self.head.features(top)
            loss, dlogits = softmax_cross_entropy(self.head.logits(params, features), batch.targets.reshape(-1))
        return loss, TaskCache(batch, masks, caches, features, dlogits)

    def backward(self, params: Params, cache: TaskCache | ShardedCache) -> Params:
        if isinstance(cache, ShardedCache):
            return gradients_by_shards(lambda part: self._backward_whole(params, part), cache)
        return self._backward_whole(params, cache)

    def _backward_whole(self, params: Params, cache: TaskCache) -> Params:
        with self.threads():
            grads, dfeatures = self.head.backward(params, cache.features, cache.dlogits)
            dtop = self.head.dtop(dfeatures, cache.batch.inputs.shape[0])
            grads.update(self.encoder.backward(params, cache.batch.inputs, cache.caches, dtop, cache.masks))
        return grads

    def loss_sum(self, params: Params, batch: Batch) -> tuple[float, int]:
        """Forward only: the summed loss and the number of scored targets (validation)."""
        targets = batch.targets.reshape(-1)
        scored = targets >= 0
        logprobs = self.logprobs(params, batch).reshape(-1, len(self.config.labels))
        return float(-logprobs[np.flatnonzero(scored), targets[scored]].sum()), int(scored.sum())

    def logprobs(self, params: Params, batch: Batch) -> np.ndarray:
        """log ŷ over the labels: classify (B, C); tag (T, B, C); by shards of the rows (cores.py)."""
        shards = batch_shards(batch.inputs.shape[1])
        if not shards:
            return self._logprobs_whole(params, batch)
        parts = on_cores(lambda rows: self._logprobs_whole(params, batch.rows(rows)), shards)
        return np.concatenate(parts, axis=self.head.batch_axis)

    def _logprobs_whole(self, params: Params, batch: Batch) -> np.ndarray:
        with self.threads():
            top, _, _ = self.encoder.forward(params, batch.inputs, keep=False)
            out = log_softmax_rows(self.head.logits(params, self.head.features(top)))
        return self.head.shaped(out, top)


@dataclass
class TranslatorCache:
    batch: Batch
    masks: list | None
    caches: list
    decoder: object


class Translator:
    """Encoder–decoder: the encoder's final states start the decoder, a language model of the
    target; the decoder's initial-state gradients flow back into the encoder's final states."""

    def __init__(self, config: ModelConfig):
        self.config = config
        self.cell = get_cell(config.cell)
        self.encoder = Encoder(config)
        self.decoder = Model(replace(config, task="lm", bidirectional=False, labels=[], tie_weights=False),
                             shard_batches=False)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {**self.encoder.param_shapes(),
                **{"decoder." + k: s for k, s in self.decoder.param_shapes().items()}}

    def state_arrays(self) -> int:
        return self.cell.state_size

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> Params:
        return {**self.encoder.init_params(rng, dtype),
                **{"decoder." + k: v for k, v in self.decoder.init_params(rng, dtype).items()}}

    def dropout_masks(self, rng: np.random.Generator, batch: Batch, dtype=np.float32):
        T, B = batch.inputs.shape
        if self.config.dropout <= 0:
            return None
        return (self.encoder.stack.dropout_masks(rng, T, B, dtype),
                self.decoder.dropout_masks(rng, batch.decoder_inputs.shape[0], B, dtype))

    def decoder_state(self, states: list) -> list:
        """The encoder's final states as the decoder's initial ones: level by level, the forward
        and reversed layers' states summed when bidirectional."""
        d = self.encoder.stack.directions
        return [tuple(sum(states[level * d + k][j] for k in range(d)) for j in range(len(states[0])))
                for level in range(self.config.layers)]

    def forward(self, params: Params, batch: Batch, masks=None) -> tuple[float, TranslatorCache | ShardedCache]:
        """Mean cross-entropy of the targets, and the cache; by shards of the batch's rows when it has
        them (cores.py)."""
        shards = batch_shards(batch.inputs.shape[1])
        if not shards:
            return self._forward_whole(params, batch, masks)

        def part(rows: slice):
            part_masks = None if masks is None else tuple(mask_rows(m, rows) for m in masks)
            return self._forward_whole(params, batch.rows(rows), part_masks)

        loss, parts, shares = loss_by_shards(shards, part, batch.targets)
        return loss, ShardedCache(shards, [p[1] for p in parts], shares)

    def _forward_whole(self, params: Params, batch: Batch, masks=None) -> tuple[float, TranslatorCache]:
        enc_masks, dec_masks = masks if masks is not None else (None, None)
        _, states, caches = self.encoder.forward(params, batch.inputs, enc_masks)
        loss, _, dec_cache = self.decoder.forward(sub_params(params, "decoder."), batch.decoder_inputs,
                                                  batch.targets, self.decoder_state(states), dec_masks)
        return loss, TranslatorCache(batch, enc_masks, caches, dec_cache)

    def backward(self, params: Params, cache: TranslatorCache | ShardedCache) -> Params:
        if isinstance(cache, ShardedCache):
            return gradients_by_shards(lambda part: self._backward_whole(params, part), cache)
        return self._backward_whole(params, cache)

    def _backward_whole(self, params: Params, cache: TranslatorCache) -> Params:
        dec = self.decoder.backward(sub_params(params, "decoder."), cache.decoder)
        grads = {"decoder." + k: v for k, v in dec.items()}
        d = self.encoder.stack.directions
        dstatesT = [cache.decoder.dstate0[i // d] for i in range(len(self.encoder.stack.layers))]
        T, B = cache.batch.inputs.shape
        dtop = np.zeros((T, B, self.encoder.stack.width), params["embed.weight"].dtype)
        grads.update(self.encoder.backward(params, cache.batch.inputs, cache.caches, dtop, cache.masks, dstatesT))
        return grads

    def encode(self, params: Params, inputs: np.ndarray) -> list:
        """The decoder's initial states for source inputs (T, B)."""
        _, states, _ = self.encoder.forward(params, inputs, keep=False)
        return self.decoder_state(states)

    def loss_sum(self, params: Params, batch: Batch) -> tuple[float, int]:
        lp, _ = self.decoder.logprobs(sub_params(params, "decoder."), batch.decoder_inputs,
                                      np.maximum(batch.targets, 0), self.encode(params, batch.inputs))
        scored = batch.targets >= 0
        return float(-lp[scored].sum()), int(scored.sum())
