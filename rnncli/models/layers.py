"""Layers and stacks: a layer is a cell plus a direction; a stack is layers with dropout between.

    h[l]<t> = cell(h[l]<t-1>, in[l]<t>)     in[0] = x, in[l] = dropout(h[l-1])      (the notes' deep RNN)

A layer reads its chunk forward in time, or reversed (`reverse=True`): then it runs the same cell
over x<T>, ..., x<1> and returns its outputs in the chunk's own order, so h<t> summarises x<t..T>.
A bidirectional level is a forward and a reversed layer over the same input, their outputs side by
side, (T, B, 2H): position t then sees the whole sequence. It has no place in a language model,
which must not see the future; the task models (tasks/models.py) use it.

A layer's parameters are named `<prefix>.<cell parameter>` (`layers.0.Wx`, reversed
`layers.0.reverse.Wx`); the stack owns the prefixes. Dropout is inverted (masks scaled by
1 / (1 - p)), applied to every level's output during training only; the masks are made by the
caller from its own RNG (`dropout_masks`).
"""

from __future__ import annotations

import numpy as np

from rnncli.kernels.blas import side_by_side
from rnncli.kernels.recurrent import Cell, Packing, State


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
    """L levels of one cell, each reading the dropped-out output of the level below. A level is one
    forward layer, or (bidirectional) a forward and a reversed layer over the same input with their
    outputs side by side: [h_fwd<t>; h_rev<t>] (T, B, 2H), the notes' bidirectional RNN.

    States and caches are flat lists, one entry per layer, level by level (forward first)."""

    def __init__(self, cell: Cell, layers: int, input_size: int, hidden: int, dropout: float = 0.0,
                 bidirectional: bool = False):
        self.cell, self.hidden, self.dropout = cell, hidden, dropout
        self.directions = 2 if bidirectional else 1
        self.width = hidden * self.directions  # each level's output size
        self.levels = layers
        self.layers = [Layer(cell, reverse=d == 1) for _ in range(layers) for d in range(self.directions)]
        self.input_sizes = [input_size] + [self.width] * (layers - 1)

    def prefix(self, index: int) -> str:
        """Parameter-name prefix of layer `index` (flat): `layers.{level}.`, or `layers.{level}.reverse.`
        for a reversed layer."""
        level, direction = divmod(index, self.directions)
        return f"layers.{level}." + ("reverse." if direction else "")

    def layer_params(self, params: dict, index: int) -> dict[str, np.ndarray]:
        prefix = self.prefix(index)
        return {k[len(prefix):]: v for k, v in params.items()
                if k.startswith(prefix) and "." not in k[len(prefix):]}

    def _input_size(self, index: int) -> int:
        return self.input_sizes[index // self.directions]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {self.prefix(i) + k: s for i in range(len(self.layers))
                for k, s in self.cell.param_shapes(self._input_size(i), self.hidden).items()}

    def init_params(self, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
        return {self.prefix(i) + k: v for i in range(len(self.layers))
                for k, v in self.cell.init_params(rng, self._input_size(i), self.hidden, dtype).items()}

    def initial_state(self, B: int, dtype=np.float32) -> list[State]:
        return [self.cell.initial_state(B, self.hidden, dtype) for _ in self.layers]

    def dropout_masks(self, rng: np.random.Generator, T: int, B: int, dtype=np.float32):
        """Inverted-dropout masks, one (T, B, width) per level, or None when dropout is off."""
        if self.dropout <= 0.0:
            return None
        keep = 1.0 - self.dropout
        return [(rng.random((T, B, self.width)) < keep).astype(dtype) / dtype(keep) for _ in range(self.levels)]

    def forward(self, params: dict, x: np.ndarray | None, state0: list[State], masks=None, keep: bool = True,
                xw0: np.ndarray | None = None):
        """x (T, B, D), or the first layer's input projection xw0 (T, B, G*H) instead (one direction
        only) -> top (T, B, width), final states, per-layer caches."""
        states, caches = [], []
        for level in range(self.levels):

            def run(i, x=x):
                p = self.layer_params(params, i)
                if i == 0 and xw0 is not None:
                    return self.layers[i].forward_projected(p, xw0, state0[0], keep)
                return self.layers[i].forward(p, x, state0[i], keep)

            first = level * self.directions
            runs = side_by_side(run, first, first + 1) if self.directions == 2 else [run(first)]
            for _, stateT, cache in runs:
                states.append(stateT)
                caches.append(cache)
            hs = runs[0][0] if self.directions == 1 else np.concatenate([r[0] for r in runs], axis=2)
            x = hs * masks[level] if masks is not None else hs  # (T, B, width)
        return x, states, caches

    def backward(self, params: dict, caches: list, dtop: np.ndarray, masks=None, projected: bool = False,
                 dstatesT: list | None = None):
        """Gradients of the stack's parameters from the top's gradient dtop (T, B, width) and, when
        given, the final states' gradients (an encoder's, flowing back from its decoder); else they
        are zero (truncated BPTT stops at the chunk's end). Returns (grads, dx (T, B, D), or the
        first layer's d(xw0) when it was given its projection, initial states' gradients)."""
        grads: dict[str, np.ndarray] = {}
        dstate0: list = [None] * len(self.layers)
        H = self.hidden
        dx = dtop
        for level in reversed(range(self.levels)):
            dhs_level = dx * masks[level] if masks is not None else dx

            def run(d, dhs_level=dhs_level, level=level):
                i = level * self.directions + d
                dhs = np.ascontiguousarray(dhs_level[:, :, d * H:(d + 1) * H] if self.directions > 1 else dhs_level)
                p = self.layer_params(params, i)
                dstateT = dstatesT[i] if dstatesT is not None else tuple(np.zeros_like(s) for s in caches[i][1])
                if i == 0 and projected:
                    return i, self.layers[i].backward_projected(p, caches[i], dhs, dstateT)
                return i, self.layers[i].backward(p, caches[i], dhs, dstateT)

            runs = side_by_side(run, 0, 1) if self.directions == 2 else [run(0)]
            dx = None
            for i, (g, dx_d, dstate0[i]) in runs:
                dx = dx_d if dx is None else dx + dx_d  # both directions read the same input
                grads.update({self.prefix(i) + k: v for k, v in g.items()})
        return grads, dx, dstate0

    def step_weights(self, params: dict, packed: Packing = True):
        """The stacked weights the cell's single step reads (generation, beam search): one direction;
        `packed`: see Cell.step_weights."""
        assert self.directions == 1, "a bidirectional stack has no single step"
        return self.cell.step_weights([self.layer_params(params, i) for i in range(len(self.layers))], packed)
