"""What every recurrent cell shares: parameters, the input projection of a whole chunk as one
product, the weight gradients as large products after the time loop, and the single step.

A cell subclass supplies two chunk kernels (forward recurrence, backward recurrence), when its
recurrent product does not take h<t-1> directly (the notes' GRU) its own `recurrent_weight_grad`,
and its single time step: a function registered with `@single_step(Weights)` for the named tuple
`Weights` of its stacked weights (`step_weights`). Generation, beam search and `Cell.step` all run
that one function (kernels/generate.py); the chunk kernels and the step share the gate maths.

Packed parameters of one layer (gate blocks side by side, order given by each cell):
    Wx (D, G*H)   input weights      (the notes' W_ax blocks, transposed)
    Wh (H, G*H)   recurrent weights  (the notes' W_aa blocks, transposed)
    b  (G*H,)     bias
"""

from __future__ import annotations

import numpy as np
from numba import types

from rnncli.kernels.blas import matmul
from rnncli.kernels.int8 import Int8Steps, held_int8
from rnncli.kernels.jit import inline, kernel, overload_by_type
from rnncli.kernels.packed import product_row, product_rows
from rnncli.kernels.packing import pack
from rnncli.kernels.two_cores import shared_product

State = tuple[np.ndarray, ...]  # (h,) or (h, c), each (B, H)


def layer_step(weights, layer, xw, h, c):
    """One time step of layer `layer` inside a kernel: xw (B, G*H) = x<t> @ Wx + b, h and c (B, H)
    updated in place (c is unused by cells without a memory cell). Each cell registers its own
    implementation for its `Weights` type with `single_step`; Numba picks it at compile time, so a
    kernel that calls this compiles only the cell it is given."""
    raise NotImplementedError("layer_step runs inside Numba kernels only")


def single_step(weights_class):
    """Register `impl(weights, layer, xw, h, c)` as `layer_step` for weights of `weights_class`."""

    def register(impl):
        @overload_by_type(layer_step)
        def _select(weights, layer, xw, h, c):
            if isinstance(weights, types.BaseNamedTuple) and weights.instance_class is weights_class:
                return impl

        return impl

    return register


def step_times(x, M):
    """x (B, K) @ W (K, F) into a new (B, F) array, for the single step, W held as the seam chose
    (`hold`): M = (W, P), P = pack(W), on one core; or (W, P, mailbox), the product shared with a
    helper on the second core (two_cores.py). Always our kernel (packed.py), never a BLAS: every
    number is one chain of fused multiply-adds in k order, whichever rows run beside it and on
    whichever CPU."""
    raise NotImplementedError("step_times runs inside Numba kernels only")


def held_layer(M, index):
    """One layer's matrix of a held stack M (`hold` of an (L, K, F) stack): (W[index], P[index]),
    with the mailbox when M has one."""
    raise NotImplementedError("held_layer runs inside Numba kernels only")


def layer_input(weights, layer, x, h):
    """x (B, D) @ Wx (+ h (B, H) @ Wh when the cell's step adds the recurrent product to its input:
    its weights hold `Wh0` and `WxhR`, the layers above the first as one product over [x<t>,
    h<t-1>] against [Wx; Wh]) -> (B, G*H). The first layer's x may be its product already, a row of
    a table of every token's (`inputs_table`): then its held Wx0 has no rows."""
    raise NotImplementedError("layer_input runs inside Numba kernels only")


@overload_by_type(step_times)
def _step_times(x, M):
    if len(M) == 7:  # the int8 form (kernels/int8.py) shared with a helper: (W', Q, S, offset, where, starts, mailbox)
        from rnncli.kernels.two_cores import shared_int8_product

        def in_int8_on_two_cores(x, M):
            out = np.empty((x.shape[0], M[0].shape[1]), dtype=x.dtype)
            shared_int8_product(x, M[1], M[2], M[3], M[4], M[5], M[6], out)
            return out

        return in_int8_on_two_cores
    if len(M) == 6:  # the int8 form on one core: (W', Q, S, offset, where, starts)
        from rnncli.kernels.int8 import one_core_product as product

        def in_int8(x, M):
            out = np.empty((x.shape[0], M[0].shape[1]), dtype=x.dtype)
            product(x, M[1], M[2], M[3], M[4], M[5], out)
            return out

        return in_int8
    if len(M) == 3:

        def on_two_cores(x, M):
            out = np.empty((x.shape[0], M[0].shape[1]), dtype=x.dtype)
            shared_product(x, M[1], M[2], out)
            return out

        return on_two_cores

    def on_one_core(x, M):
        out = np.empty((x.shape[0], M[0].shape[1]), dtype=x.dtype)
        if x.shape[0] == 1:
            product_row(x[0], M[1], out[0])
        else:
            product_rows(x, M[1], out)
        return out

    return on_one_core


@overload_by_type(held_layer)
def _held_layer(M, index):
    if len(M) == 7:
        return lambda M, index: (M[0][index], M[1][index], M[2][index], M[3][index], M[4], M[5], M[6])
    if len(M) == 6:
        return lambda M, index: (M[0][index], M[1][index], M[2][index], M[3][index], M[4], M[5])
    if len(M) == 3:
        return lambda M, index: (M[0][index], M[1][index], M[2])
    return lambda M, index: (M[0][index], M[1][index])


@overload_by_type(layer_input)
def _layer_input(weights, layer, x, h):
    if "WxhR" not in weights.fields:

        def separate(weights, layer, x, h):
            if layer > 0:
                return step_times(x, held_layer(weights.WxR, layer - 1))
            return x if weights.Wx0[0].shape[0] == 0 else step_times(x, weights.Wx0)

        return separate

    def fused(weights, layer, x, h):
        if layer == 0:  # x<t> @ Wx (or its table's row) + h<t-1> @ Wh: two chains, one addition
            xw = x if weights.Wx0[0].shape[0] == 0 else step_times(x, weights.Wx0)
            hW = step_times(h, weights.Wh0)
            for b in range(xw.shape[0]):
                for j in range(xw.shape[1]):
                    xw[b, j] += hW[b, j]
            return xw
        D = x.shape[1]
        z = np.empty((x.shape[0], D + h.shape[1]), dtype=x.dtype)  # [x, h<t-1>]
        for b in range(x.shape[0]):
            for d in range(D):
                z[b, d] = x[b, d]
            for j in range(h.shape[1]):
                z[b, D + j] = h[b, j]
        return step_times(z, held_layer(weights.WxhR, layer - 1))  # [Wx; Wh] (2H, G*H)

    return fused


@inline
def add_row(out, row):
    """out (B, F) += row (F,), in place (a loop: the array expression compiles ~0.3 s longer)."""
    for b in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[b, j] += row[j]


@inline
def run_stack_step(weights, x, h, c):
    """x (B, D) through every layer for one time step -> the top layer's h (B, H)."""
    for layer in range(h.shape[0]):
        xw = layer_input(weights, layer, x, h[layer])  # (B, G*H)
        add_row(xw, weights.b[layer])
        layer_step(weights, layer, xw, h[layer], c[layer])
        x = h[layer]
    return x.copy()


@kernel
def stack_step(weights, x, h, c):
    """One time step of a stack (Cell.step)."""
    return run_stack_step(weights, x, h, c)


# Compile time, measured cold for a 2-layer lstm: a kernel that calls another kernel links and
# optimises the callee's code again, so the stack's step is inlined into generation's `model_step`
# (and into `stack_step`) rather than a kernel of its own (5.3 + 2.6 s -> 5.3 s). Inlining
# everything into `generate` instead took longer still (13 s): Numba's inlining re-types the
# inlined code at every call site.


def stacked(layers: list[dict], key: str, dtype) -> np.ndarray:
    """One parameter of every layer stacked, (L, ...), contiguous."""
    return np.ascontiguousarray(np.stack([lp[key] for lp in layers]).astype(dtype, copy=False))


def input_weights(layers: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Wx0 (D, G*H) of the first layer and WxR (max(L-1, 1), H, G*H) of the others (a zero
    placeholder for one layer: a kernel argument needs an array)."""
    Wx0 = np.ascontiguousarray(layers[0]["Wx"])
    if len(layers) > 1:
        return Wx0, np.ascontiguousarray(np.stack([lp["Wx"] for lp in layers[1:]]))
    return Wx0, np.zeros((1,) + layers[0]["Wh"].shape, Wx0.dtype)


Packing = bool | np.ndarray | Int8Steps
"""How the single step's matrices are held (`hold`), the engine seam's choice (execution/steps.py):
True, packed, for steps on one core; a mailbox (two_cores.new_mailbox()), packed and each product
shared with a helper on the second core (a few rows: batch-1 generation, a beam). Either way the
same matrices and the same arithmetic (packed.py: every number one chain of fused multiply-adds in
k order), so a row's numbers never depend on which, nor on the rows beside it. Or, for a model
whose steps are int8 (`Int8Steps`), int8 weights and activations, summed as exact integers: again
each row's numbers its own, on any CPU."""


def hold(W: np.ndarray, form: Packing = True, pieces: int = 1) -> tuple:
    """W (K, F), or a stack of them (L, K, F), as the single step multiplies by it (`step_times`):
    (W, W packed) (packed.py: (blocks, K, 2V) a matrix), with the mailbox when `form` is one; or
    (W, its int8 form...) (kernels/int8.py), W made of `pieces` matrices stacked along k, each
    quantized on its own. A cell's `step_weights` holds each matrix its step multiplies by; the form
    is not the cell's."""
    W = np.ascontiguousarray(W)
    if isinstance(form, Int8Steps):
        return held_int8(W, form, pieces)
    P = pack(W) if W.ndim == 2 else np.ascontiguousarray(np.stack([pack(w) for w in W]))
    return (W, P, form) if isinstance(form, np.ndarray) else (W, P)


def fused_inputs(Wx0: np.ndarray, WxR: np.ndarray, Wh: np.ndarray, form: Packing) -> tuple:
    """For a cell whose step multiplies h<t-1> by all of Wh (L, H, G*H) and adds it to x<t> @ Wx:
    (Wx0, Wh0, WxhR) held, the first layer's two matrices apart (its input product may come from
    a table, `inputs_table`) and one product per layer above over [x<t>, h<t-1>] against [Wx; Wh]
    (WxhR (L-1, 2H, G*H)): fewer, larger products (for two cores to share: one request to the
    helper per layer instead of two). The layer's input xw then holds the recurrent product too."""
    if Wh.shape[0] > 1:
        WxhR = np.concatenate([WxR, Wh[1:]], axis=1)
    else:  # a placeholder: a kernel argument needs an array
        WxhR = np.zeros((1, 2 * Wh.shape[1], Wh.shape[2]), Wh.dtype)
    return hold(Wx0, form), hold(Wh[0], form), hold(WxhR, form, pieces=2)


TABLE_PAYS_WITHIN = 64  # steps: a table of every token's input product is built when it costs no more


def inputs_table(E: np.ndarray, weights) -> tuple:
    """(E, weights) of the single step, or (E @ Wx0, weights with an empty Wx0) where that pays:
    the first layer's input product x<t> @ Wx0 for x<t> = E[token] is then a row of the table,
    looked up rather than computed at every step. The same numbers: a row of the table is the
    packed kernel's chain of fused multiply-adds in k order (`input_product`), as the step's own
    product of that one row is. It pays where the table costs at most TABLE_PAYS_WITHIN steps of the
    stack to build and is small: a character model's (small lstm 1 x 128: 64 x 512 of its 192 x 512
    per layer-0 step), not a word model's (10,000 words into a 2 x 200 lstm: the work of ~2,500 steps)."""
    W0 = weights.Wx0[0]
    V, (D, F) = E.shape[0], W0.shape
    step = sum(m[0].size for m in weights if isinstance(m, tuple))  # multiply-adds of a row's step
    if V * D * F > TABLE_PAYS_WITHIN * step or V * F * E.itemsize > 64 << 20:
        return E, weights
    rows = np.ascontiguousarray(E, dtype=W0.dtype)
    if len(weights.Wx0) >= 6:  # int8 steps: each row of the table the step's own int8 product
        from rnncli.kernels.int8 import int8_product

        table = np.empty((V, F), W0.dtype)
        int8_product(rows, weights.Wx0[1:6], table)
    else:
        table = input_product(rows, W0)
    empty = hold(np.empty((0, F), W0.dtype), weights.Wx0[-1] if len(weights.Wx0) in (3, 7) else True)
    return table, weights._replace(Wx0=empty)


def input_product(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """x (M, K) @ W (K, F) for a chunk's input side (x @ Wx forward, d(xw) @ Wx^T backward), M = the
    chunk's T*B positions: execution/cores.rows_product (16 rows at a time against the packed W ran at
    105-110 GFLOP/s where OpenBLAS ran at 97-103, one core, 1600 x 512 @ 512 x 2048 and 1600 x 2048
    @ 2048 x 512)."""
    from rnncli.execution.cores import rows_product

    return rows_product(x, W)


def gate_blocks(a: np.ndarray, H: int, order: list[int], axis: int = 0) -> np.ndarray:
    """The gate blocks of `a` (each H wide along `axis`) in another order (another tool's)."""
    parts = np.split(a, a.shape[axis] // H, axis=axis)
    return np.concatenate([parts[i] for i in order], axis=axis)


class Cell:
    name: str = ""
    gates: int = 1  # G
    state_size: int = 1  # arrays in the state: 1 (h) or 2 (h, c)
    paper: str = ""
    # How other tools hold this cell: PyTorch's module (formats/interop.py: same gate order, so no
    # block moves) and ONNX's operator (`onnx_layer`, formats/onnx_export.py); where a tool has none,
    # why (a test walks the registry: every cell has one or the other, never a silent stand-in).
    torch_module: str | None = None
    not_in_torch: str = ""
    not_in_onnx: str = ""

    def onnx_layer(self, p: dict, H: int) -> tuple[str, dict, dict]:
        """One layer's parameters `p` as ONNX's operator holds them: (operator, its W (G*H, D), R
        (G*H, H), B (2*G*H,) [and P] arrays, its attributes). A cell without one says why in `not_in_onnx`."""
        raise NotImplementedError(f"{self.name}: {self.not_in_onnx or 'no ONNX operator'}")

    def param_shapes(self, D: int, H: int) -> dict[str, tuple[int, ...]]:
        G = self.gates
        return {"Wx": (D, G * H), "Wh": (H, G * H), "b": (G * H,)}

    def init_params(self, rng: np.random.Generator, D: int, H: int, dtype=np.float32) -> dict[str, np.ndarray]:
        """Uniform in +-1/sqrt(H) (PyTorch's default for its recurrent layers), for every cell: the
        lstm's forget-gate bias of 1 and orthogonal recurrent weights measured no better in
        five-minute runs (bench/README.md, "Quality at a fixed budget")."""
        bound = 1.0 / np.sqrt(H)
        return {k: rng.uniform(-bound, bound, size=s).astype(dtype) for k, s in self.param_shapes(D, H).items()}

    def initial_state(self, B: int, H: int, dtype=np.float32) -> State:
        return tuple(np.zeros((B, H), dtype=dtype) for _ in range(self.state_size))

    # ---- forward / backward over a chunk of T steps ------------------------------------------

    def forward(self, p: dict, x: np.ndarray, state0: State, keep: bool = True):
        """x (T, B, D) -> hs (T, B, H), final state, cache for backward (None unless `keep`)."""
        T, B, D = x.shape
        xw = input_product(x.reshape(T * B, D), p["Wx"])  # (T*B, G*H), one product for all steps
        xw += p["b"]
        return self.forward_projected(p, xw.reshape(T, B, -1), state0, keep, x)

    def forward_projected(self, p: dict, xw: np.ndarray, state0: State, keep: bool = True, x=None):
        """The same from the input projection xw = x @ Wx + b (T, B, G*H) computed by the caller
        (the model looks up its first layer's in a per-token table); `x` is kept for `backward`."""
        hs, stateT, saved = self.recurrence(p, xw, state0, keep)
        return hs, stateT, ((x, state0, hs, saved) if keep else None)

    def backward(self, p: dict, cache, dhs: np.ndarray, dstateT: State):
        """Gradients of every parameter, of the chunk's input x and of the initial state."""
        grads, dxw, dstate0 = self.backward_projected(p, cache, dhs, dstateT)
        x = cache[0]
        T, B, D = x.shape
        grads["Wx"] = matmul(x.reshape(T * B, D).T, dxw)  # (D, G*H), one product over all T*B rows
        grads["b"] = dxw.sum(axis=0)
        dx = input_product(dxw, p["Wx"].T).reshape(T, B, D)
        return grads, dx, dstate0

    def backward_projected(self, p: dict, cache, dhs: np.ndarray, dstateT: State):
        """Gradients of the recurrent parameters, of the input projection xw (as (T*B, G*H)) and
        of the initial state: `backward` without the input side."""
        dgates, dstate0 = self.recurrence_backward(p, cache, dhs, dstateT)  # (T, B, G*H)
        # Usually one gradient reaches both products. A cell may instead return (gradient of
        # x @ Wx + b, what its recurrent_weight_grad takes): gru-cudnn, whose recurrent product
        # enters its gates differently, and gru, which keeps its two products' blocks apart.
        dgates, dgates_h = dgates if isinstance(dgates, tuple) else (dgates, dgates)
        grads = {"Wh": self.recurrent_weight_grad(cache, dgates_h), **self.extra_grads(p, cache, dgates_h)}
        return grads, dgates.reshape(-1, dgates.shape[-1]), dstate0

    def recurrent_weight_grad(self, cache, dgates: np.ndarray) -> np.ndarray:
        """dWh = sum_t h<t-1>^T dgates<t>: the initial state's term plus one product over t >= 1."""
        x, state0, hs, saved = cache
        T, B, H = hs.shape
        dWh = matmul(state0[0].T, dgates[0])
        if T > 1:
            dWh += matmul(hs[:-1].reshape(-1, H).T, dgates[1:].reshape((T - 1) * B, -1))
        return dWh

    def extra_grads(self, p: dict, cache, dgates: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    # ---- to be supplied by each cell --------------------------------------------------------

    def recurrence(self, p: dict, xw: np.ndarray, state0: State, keep: bool):
        raise NotImplementedError

    def recurrence_backward(self, p: dict, cache, dhs: np.ndarray, dstateT: State):
        raise NotImplementedError

    def gate_values(self, saved, H: int) -> dict[str, np.ndarray]:
        """The gates' values (after their activation) over a chunk run with `keep`, by their names in
        the notes, each (T, B, H); `saved` is the fourth part of the chunk's cache. None for the plain RNN."""
        return {}

    def step_weights(self, layers: list[dict], packed: Packing = True):
        """The stacked weights of a stack of this cell (`layers`: each layer's parameters), as the
        named tuple its registered single step reads; each matrix it multiplies by held (`hold`) in
        the form `packed` the engine chose (`Packing`)."""
        raise NotImplementedError

    # ---- the single step ----------------------------------------------------------------------

    def step(self, p: dict, x: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """One time step of one layer: x (B, D) -> h (B, H), new state. Stores nothing. Runs the
        cell's registered single step, as generation does."""
        h = state[0][None].copy()  # (1, B, H): a stack of one layer
        c = (state[1] if self.state_size > 1 else state[0])[None].copy()
        top = stack_step(self.step_weights([p]), np.ascontiguousarray(x), h, c)
        return top, ((h[0],) if self.state_size == 1 else (h[0], c[0]))
