"""Layers and stacks: a layer is a cell plus a direction; a stack is layers with dropout between.

    h[l]<t> = cell(h[l]<t-1>, in[l]<t>)     in[0] = x, in[l] = dropout(h[l-1])      (the notes' deep RNN)

A layer reads its chunk forward in time, or reversed (`reverse=True`): then it runs the same cell
over x<T>, ..., x<1> and returns its outputs in the chunk's own order, so h<t> summarises x<t..T>.
A bidirectional level (#11) is a forward and a reversed layer over the same input, their outputs
side by side, (T, B, 2H); it has no place in a language model, which must not see the future.

A layer's parameters are named `<prefix>.<cell parameter>` (`layers.0.Wx`); the stack owns the
prefixes. Dropout is inverted (masks scaled by 1 / (1 - p)), applied to every layer's output during
training only; the masks are made by the caller from its own RNG (`dropout_masks`).
"""

from __future__ import annotations

import numpy as np

from rnncli.kernels.recurrent import Cell, State


class Layer:
    """A cell over a chunk, forward or reversed in time. Time-major arrays: x (T, B, D)."""

    def __init__(self, cell: Cell, reverse: bool = False):
        self.cell, self.reverse = cell, reverse

    def _order(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a[::-1]) if self.reverse else a

    def forward(self, p: dict, x: np.ndarray, state0: State, keep: bool = True):
        """-> hs (T, B, H) in the chunk's order, final state, cache (None unless keep)."""
        hs, stateT, cache = self.cell.forward(p, self._order(x), state0, keep)
        return self._order(hs), stateT, cache

    def forward_projected(self, p: dict, xw: np.ndarray, state0: State, keep: bool = True):
        """The same from the input projection xw = x @ Wx + b (T, B, G*H) computed by the caller."""
        hs, stateT, cache = self.cell.forward_projected(p, self._order(xw), state0, keep)
        return self._order(hs), stateT, cache

    def backward(self, p: dict, cache, dhs: np.ndarray, dstateT: State):
        """-> parameter gradients, dx (T, B, D), gradient of the initial state."""
        grads, dx, dstate0 = self.cell.backward(p, cache, self._order(dhs), dstateT)
        return grads, self._order(dx), dstate0

    def backward_projected(self, p: dict, cache, dhs: np.ndarray, dstateT: State):
        """-> recurrent parameter gradients, d(xw) (T, B, G*H), gradient of the initial state."""
        grads, dxw, dstate0 = self.cell.backward_projected(p, cache, self._order(dhs), dstateT)
        T = dhs.shape[0]
        return grads, self._order(dxw.reshape(T, -1, dxw.shape[-1])), dstate0


class Stack:
    """L layers of one cell, each reading the dropped-out output of the one below."""

    def __init__(self, cell: Cell, layers: int, input_size: int, hidden: int, dropout: float = 0.0):
        self.cell, self.hidden, self.dropout = cell, hidden, dropout
        self.layers = [Layer(cell) for _ in range(layers)]
        self.input_sizes = [input_size] + [hidden] * (layers - 1)

    @staticmethod
    def prefix(layer: int) -> str:
        return f"layers.{layer}."

    def layer_params(self, params: dict, layer: int) -> dict[str, np.ndarray]:
        prefix = self.prefix(layer)
        return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {self.prefix(i) + k: s for i, D in enumerate(self.input_sizes)
                for k, s in self.cell.param_shapes(D, self.hidden).items()}

    def init_params(self, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
        return {self.prefix(i) + k: v for i, D in enumerate(self.input_sizes)
                for k, v in self.cell.init_params(rng, D, self.hidden, dtype).items()}

    def initial_state(self, B: int, dtype=np.float32) -> list[State]:
        return [self.cell.initial_state(B, self.hidden, dtype) for _ in self.layers]

    def dropout_masks(self, rng: np.random.Generator, T: int, B: int, dtype=np.float32):
        """Inverted-dropout masks, one (T, B, H) per layer, or None when dropout is off."""
        if self.dropout <= 0.0:
            return None
        keep = 1.0 - self.dropout
        return [(rng.random((T, B, self.hidden)) < keep).astype(dtype) / dtype(keep) for _ in self.layers]

    def forward(self, params: dict, x: np.ndarray | None, state0: list[State], masks=None, keep: bool = True,
                xw0: np.ndarray | None = None):
        """x (T, B, D), or the first layer's input projection xw0 (T, B, G*H) instead ->
        top (T, B, H), final states, per-layer caches."""
        states, caches = [], []
        for i, layer in enumerate(self.layers):
            p = self.layer_params(params, i)
            if i == 0 and xw0 is not None:
                hs, stateT, cache = layer.forward_projected(p, xw0, state0[0], keep)
            else:
                hs, stateT, cache = layer.forward(p, x, state0[i], keep)
            states.append(stateT)
            caches.append(cache)
            x = hs * masks[i] if masks is not None else hs  # (T, B, H)
        return x, states, caches

    def backward(self, params: dict, caches: list, dtop: np.ndarray, masks=None, projected: bool = False):
        """Gradients of the stack's parameters from the top's gradient dtop (T, B, H); the final
        states' gradients are zero (truncated BPTT stops at the chunk's end). Returns (grads, dx
        (T, B, D), or the first layer's d(xw0) when it was given its projection, initial states'
        gradients)."""
        grads: dict[str, np.ndarray] = {}
        dstate0: list = [None] * len(self.layers)
        dx = dtop
        for i in reversed(range(len(self.layers))):
            dhs = np.ascontiguousarray(dx * masks[i] if masks is not None else dx)
            p = self.layer_params(params, i)
            zero = tuple(np.zeros_like(s) for s in caches[i][1])
            if i == 0 and projected:
                g, dx, dstate0[i] = self.layers[i].backward_projected(p, caches[i], dhs, zero)
            else:
                g, dx, dstate0[i] = self.layers[i].backward(p, caches[i], dhs, zero)
            grads.update({self.prefix(i) + k: v for k, v in g.items()})
        return grads, dx, dstate0

    def step_weights(self, params: dict):
        """The stacked weights the cell's single step reads (generation, beam search)."""
        return self.cell.step_weights([self.layer_params(params, i) for i in range(len(self.layers))])
