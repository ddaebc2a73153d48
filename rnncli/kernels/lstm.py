"""Long short-term memory (Hochreiter & Schmidhuber 1997), optionally with peepholes (Gers &
Schmidhuber 2000). G = 4, gate order [i, f, g, o] as in PyTorch's nn.LSTM, where the notes call
i the update gate Γ_u, g the candidate c~, f the forget gate Γ_f and o the output gate Γ_o:

    Γ_u = i = σ(W_u [h<t-1>, x<t>] + b_u  (+ p_i * c<t-1>))
    Γ_f = f = σ(W_f [h<t-1>, x<t>] + b_f  (+ p_f * c<t-1>))
    c~  = g = tanh(W_c [h<t-1>, x<t>] + b_c)
    c<t>    = Γ_u * c~ + Γ_f * c<t-1>
    Γ_o = o = σ(W_o [h<t-1>, x<t>] + b_o  (+ p_o * c<t>))
    h<t>    = Γ_o * tanh(c<t>)
The peephole terms (cell `lstm-peephole`) use diagonal weights `peep` (3, H) = [p_i, p_f, p_o].

Backward, with dh, dc the total gradients reaching h<t>, c<t> from later steps:
    do_pre  = dh * tanh(c) * o (1 - o)
    dc      = dc + dh * o * (1 - tanh(c)^2)  (+ do_pre * p_o)
    di_pre  = dc * g * i (1 - i);  df_pre = dc * c<t-1> * f (1 - f);  dg_pre = dc * i * (1 - g^2)
    dc<t-1> = dc * f  (+ di_pre * p_i + df_pre * p_f)
    dh<t-1> = [di, df, dg, do]_pre @ Wh^T      (each per-step product against packed weights: packed.py)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rnncli.kernels.activations import sigmoid, sigmoid_or_tanh, tanh
from rnncli.kernels.jit import inline, kernel
from rnncli.kernels.packed import packed_product
from rnncli.kernels.packing import pack
from rnncli.kernels.recurrent import (
    Cell,
    fused_inputs,
    gate_blocks,
    input_weights,
    single_step,
    stacked,
)

# The gate maths is split into short passes over few arrays: LLVM vectorises a loop only when it
# can check that its arrays do not overlap, and gives up beyond a handful of them (measured: one
# fused loop over nine arrays ran 5x slower than these passes).


@inline
def _activate_gates(product, xw_t, c_prev, peep, peephole, gates):
    """gates (B, 4H) = σ / tanh of product + xw, where product holds h<t-1> @ Wh. With peepholes the
    output gate is left as a pre-activation: it needs c<t> (see _new_state). `product` and `gates`
    must be different arrays (LLVM does not vectorise a loop whose input and output may overlap).
    Without peepholes one loop over the row's 4H gates, tanh for c~ and σ for the others chosen
    without a branch: one lstm forward step (16 rows) 26.5 -> 24.3 us at H = 128, 341 -> 322 us at
    H = 512, against three loops (σ, tanh, σ)."""
    B, G4 = gates.shape
    H = G4 // 4
    for b in range(B):
        if not peephole:
            row_product, row_xw, row_gates = product[b], xw_t[b], gates[b]
            for j in range(G4):
                row_gates[j] = sigmoid_or_tanh(row_product[j] + row_xw[j], (j >= 2 * H) & (j < 3 * H))
            continue
        for j in range(H):
            gates[b, j] = sigmoid(product[b, j] + xw_t[b, j] + peep[0, j] * c_prev[b, j])
        for j in range(H):
            gates[b, H + j] = sigmoid(product[b, H + j] + xw_t[b, H + j] + peep[1, j] * c_prev[b, j])
        for j in range(2 * H, 3 * H):
            gates[b, j] = tanh(product[b, j] + xw_t[b, j])
        for j in range(3 * H, 4 * H):
            gates[b, j] = product[b, j] + xw_t[b, j]


@inline
def _new_state(gates, c_prev, peep, peephole, c_out, h_out):
    """c = i * g + f * c<t-1>; h = o * tanh(c)."""
    B, H = c_out.shape
    for b in range(B):
        for j in range(H):
            c_out[b, j] = gates[b, j] * gates[b, 2 * H + j] + gates[b, H + j] * c_prev[b, j]
        if peephole:
            for j in range(H):
                gates[b, 3 * H + j] = sigmoid(gates[b, 3 * H + j] + peep[2, j] * c_out[b, j])
        for j in range(H):
            h_out[b, j] = gates[b, 3 * H + j] * tanh(c_out[b, j])


@kernel
def lstm_forward(xw, Wh_packed, peep, h0, c0, peephole, keep):
    """xw (T, B, 4H), Wh_packed = pack(Wh) (kernels/packed.py), peep (3, H), h0 and c0 (B, H)
    -> hs (T, B, H), cs (T or 1, B, H) cell states, gates (T or 1, B, 4H) after activation,
       cT (B, H) the final cell state."""
    T, B, G4 = xw.shape
    H = G4 // 4
    S = T if keep else 1
    hs = np.empty((T, B, H), dtype=xw.dtype)
    cs = np.empty((S, B, H), dtype=xw.dtype)
    gates = np.empty((S, B, G4), dtype=xw.dtype)
    # h<t-1> @ Wh goes to a buffer that stays in cache, not straight into this step's fresh gate
    # storage: one lstm layer's chunk forward 55 -> 52 ms.
    hW = np.empty((B, G4), dtype=xw.dtype)
    c_prev = c0.copy()
    for t in range(T):
        s = t if keep else 0
        h_prev = h0 if t == 0 else hs[t - 1]
        packed_product(h_prev, Wh_packed, hW)
        _activate_gates(hW, xw[t], c_prev, peep, peephole, gates[s])
        _new_state(gates[s], c_prev, peep, peephole, cs[s], hs[t])
        c_prev[:] = cs[s]
    return hs, cs, gates, c_prev


@kernel
def lstm_backward(dhs, dhT, dcT, WhT_packed, peep, peephole, c0, cs, gates):
    """-> dgates (T, B, 4H) pre-activation gradients, dh0, dc0 (B, H). WhT_packed = pack(Wh^T).
    Each row's gate gradients in short passes over a few contiguous pieces of the row (one loop over
    all of them does not vectorise): the step's gate maths at H = 128 4.7 -> 3.2 us, H = 512 38 -> 31."""
    T, B, H = cs.shape
    one = cs.dtype.type(1.0)
    dgates = np.empty_like(gates)
    dh = dhT.copy()
    dc = dcT.copy()
    tanh_c = np.empty(H, dtype=cs.dtype)
    for t in range(T - 1, -1, -1):
        c_prev = c0 if t == 0 else cs[t - 1]
        dh += dhs[t]  # total gradient reaching h<t>
        for b in range(B):
            g, dg = gates[t, b], dgates[t, b]
            i, f, cand, o = g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:]
            di, df, dcand, do = dg[:H], dg[H:2 * H], dg[2 * H:3 * H], dg[3 * H:]  # pre-activation gradients
            c, cp, dhb, dcb = cs[t, b], c_prev[b], dh[b], dc[b]
            for j in range(H):  # through h = o * tanh(c)
                tanh_c[j] = tanh(c[j])
            for j in range(H):
                do[j] = dhb[j] * tanh_c[j] * o[j] * (one - o[j])
            for j in range(H):
                dcb[j] += dhb[j] * o[j] * (one - tanh_c[j] * tanh_c[j])
            if peephole:
                for j in range(H):
                    dcb[j] += do[j] * peep[2, j]
            for j in range(H):  # through c = i * g + f * c<t-1>
                di[j] = dcb[j] * cand[j] * i[j] * (one - i[j])
            for j in range(H):
                df[j] = dcb[j] * cp[j] * f[j] * (one - f[j])
            for j in range(H):
                dcand[j] = dcb[j] * i[j] * (one - cand[j] * cand[j])
            for j in range(H):
                dcb[j] *= f[j]
            if peephole:
                for j in range(H):
                    dcb[j] += di[j] * peep[0, j] + df[j] * peep[1, j]
        packed_product(dgates[t], WhT_packed, dh)  # dh<t-1> = dgates<t> @ Wh^T
    return dgates, dh, dc


class LSTMWeights(NamedTuple):
    """A stack's weights for the single step: b (L, 4H), peep (L, 3, H) (zeros without peepholes),
    and Wx, Wh held (`fused_inputs`), so the layer's input holds h<t-1> @ Wh."""

    b: np.ndarray
    peep: np.ndarray
    Wx0: tuple
    Wh0: tuple
    WxhR: tuple


class PeepholeLSTMWeights(LSTMWeights):
    """The same for `lstm-peephole`: a type of its own, so that each step is compiled with its
    peephole terms in or out (the plain lstm's step compiles ~0.3 s sooner without them)."""


def _lstm_step(peephole: bool):
    """One step of one layer, with `peephole` fixed when it is compiled: the gates from xw and
    h<t-1> @ Wh, then c and h, in place."""

    def lstm_step(weights, layer, xw, h, c):
        gates = np.empty_like(xw)
        c_prev = c.copy()
        _activate_gates(np.zeros_like(xw), xw, c_prev, weights.peep[layer], peephole, gates)  # (h @ Wh in xw)
        _new_state(gates, c_prev, weights.peep[layer], peephole, c, h)

    return lstm_step


single_step(LSTMWeights)(_lstm_step(False))
single_step(PeepholeLSTMWeights)(_lstm_step(True))


class LSTMCell(Cell):
    gates = 4
    state_size = 2

    def __init__(self, peephole: bool = False):
        self.peephole = peephole
        self.name = "lstm-peephole" if peephole else "lstm"
        self.paper = "Gers & Schmidhuber 2000" if peephole else "Hochreiter & Schmidhuber 1997"
        self.torch_module = None if peephole else "nn.LSTM"
        self.not_in_torch = "nn.LSTM has no peephole connections" if peephole else ""

    def onnx_layer(self, p, H):
        """ONNX's LSTM: gates [i, f, g, o] reordered to its `iofc`, peepholes `P` in `iof`."""
        order = [0, 3, 1, 2]
        b = p["b"]
        arrays = {"W": gate_blocks(p["Wx"].T, H, order), "R": gate_blocks(p["Wh"].T, H, order),
                  "B": np.concatenate([gate_blocks(b, H, order), np.zeros_like(b)])}
        if self.peephole:
            arrays["P"] = np.concatenate([p["peep"][0], p["peep"][2], p["peep"][1]])  # [p_i, p_o, p_f]
        return "LSTM", arrays, {}

    def param_shapes(self, D, H):
        shapes = super().param_shapes(D, H)
        if self.peephole:
            shapes["peep"] = (3, H)
        return shapes

    def _peep(self, p, H, dtype):
        return p["peep"] if self.peephole else np.zeros((3, H), dtype=dtype)

    def recurrence(self, p, xw, state0, keep):
        h0, c0 = state0
        H = h0.shape[1]
        hs, cs, gates, cT = lstm_forward(xw, pack(p["Wh"]), self._peep(p, H, xw.dtype), h0, c0,
                                         self.peephole, keep)
        return hs, (hs[-1].copy(), cT), (cs, gates)

    def gate_values(self, saved, H):
        gates = saved[1]  # (T, B, 4H): [Γ_u, Γ_f, c~, Γ_o]
        return {"update": gates[..., :H], "forget": gates[..., H:2 * H], "output": gates[..., 3 * H:]}

    def recurrence_backward(self, p, cache, dhs, dstateT):
        x, (h0, c0), hs, (cs, gates) = cache
        H = h0.shape[1]
        dgates, dh0, dc0 = lstm_backward(dhs, dstateT[0], dstateT[1], pack(p["Wh"].T),
                                         self._peep(p, H, hs.dtype), self.peephole, c0, cs, gates)
        return dgates, (dh0, dc0)

    def extra_grads(self, p, cache, dgates):
        if not self.peephole:
            return {}
        x, (h0, c0), hs, (cs, gates) = cache
        H = h0.shape[1]
        c_prev = np.concatenate([c0[None], cs[:-1]])  # (T, B, H)
        dpeep = np.empty((3, H), dtype=hs.dtype)
        dpeep[0] = (dgates[:, :, :H] * c_prev).sum(axis=(0, 1))  # dp_i = sum di_pre * c<t-1>
        dpeep[1] = (dgates[:, :, H : 2 * H] * c_prev).sum(axis=(0, 1))  # dp_f = sum df_pre * c<t-1>
        dpeep[2] = (dgates[:, :, 3 * H :] * cs).sum(axis=(0, 1))  # dp_o = sum do_pre * c<t>
        return {"peep": dpeep}

    def step_weights(self, layers, packed=True):
        dtype = layers[0]["Wx"].dtype
        H = layers[0]["Wh"].shape[0]
        peep = [self._peep(lp, H, dtype) for lp in layers]
        weights = PeepholeLSTMWeights if self.peephole else LSTMWeights
        return weights(stacked(layers, "b", dtype), np.ascontiguousarray(np.stack(peep)),
                       *fused_inputs(*input_weights(layers), stacked(layers, "Wh", dtype), packed))
