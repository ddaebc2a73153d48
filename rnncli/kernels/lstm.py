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
    dh<t-1> = [di, df, dg, do]_pre @ Wh^T
"""

from __future__ import annotations

import numpy as np

from rnncli.kernels.activations import sigmoid, tanh
from rnncli.kernels.jit import inline, kernel
from rnncli.kernels.recurrent import Cell, contiguous_T


@inline
def _lstm_math(pre, xw_t, c_prev, peep, peephole, g_out, c_out, tc_out, h_out):
    """pre = h<t-1> @ Wh (B, 4H) -> gates [i, f, g, o] (B, 4H), c, tanh(c), h (B, H)."""
    B, H = h_out.shape
    for b in range(B):
        for j in range(H):
            cp = c_prev[b, j]
            a_i = xw_t[b, j] + pre[b, j]
            a_f = xw_t[b, H + j] + pre[b, H + j]
            a_o = xw_t[b, 3 * H + j] + pre[b, 3 * H + j]
            if peephole:
                a_i += peep[0, j] * cp
                a_f += peep[1, j] * cp
            i = sigmoid(a_i)
            f = sigmoid(a_f)
            g = tanh(xw_t[b, 2 * H + j] + pre[b, 2 * H + j])
            c = i * g + f * cp
            if peephole:
                a_o += peep[2, j] * c
            o = sigmoid(a_o)
            tc = tanh(c)
            g_out[b, j] = i
            g_out[b, H + j] = f
            g_out[b, 2 * H + j] = g
            g_out[b, 3 * H + j] = o
            c_out[b, j] = c
            tc_out[b, j] = tc
            h_out[b, j] = o * tc


@kernel
def lstm_forward(xw, Wh, peep, h0, c0, peephole, keep):
    """xw (T, B, 4H), Wh (H, 4H), peep (3, H), h0 and c0 (B, H)
    -> hs (T, B, H), cs (T or 1, B, H) cell states, tcs tanh(c) and gates (T or 1, B, 4H),
       cT (B, H) the final cell state."""
    T, B, G4 = xw.shape
    H = G4 // 4
    S = T if keep else 1
    hs = np.empty((T, B, H), dtype=xw.dtype)
    cs = np.empty((S, B, H), dtype=xw.dtype)
    tcs = np.empty((S, B, H), dtype=xw.dtype)
    gates = np.empty((S, B, G4), dtype=xw.dtype)
    c_prev = c0.copy()
    pre = np.empty((B, G4), dtype=xw.dtype)
    for t in range(T):
        s = t if keep else 0
        h_prev = h0 if t == 0 else hs[t - 1]
        np.dot(h_prev, Wh, pre)  # (B, H) @ (H, 4H)
        _lstm_math(pre, xw[t], c_prev, peep, peephole, gates[s], cs[s], tcs[s], hs[t])
        c_prev[:] = cs[s]
    return hs, cs, tcs, gates, c_prev


@kernel
def lstm_backward(dhs, dhT, dcT, WhT, peep, peephole, c0, cs, tcs, gates):
    """-> dgates (T, B, 4H) pre-activation gradients, dh0, dc0 (B, H). WhT is (4H, H)."""
    T, B, H = cs.shape
    one = cs.dtype.type(1.0)
    dgates = np.empty_like(gates)
    dh = dhT.copy()
    dc = dcT.copy()
    for t in range(T - 1, -1, -1):
        c_prev = c0 if t == 0 else cs[t - 1]
        for b in range(B):
            for j in range(H):
                d = dhs[t, b, j] + dh[b, j]
                i = gates[t, b, j]
                f = gates[t, b, H + j]
                g = gates[t, b, 2 * H + j]
                o = gates[t, b, 3 * H + j]
                tc = tcs[t, b, j]
                cp = c_prev[b, j]
                do_pre = d * tc * o * (one - o)
                dct = dc[b, j] + d * o * (one - tc * tc)
                if peephole:
                    dct += do_pre * peep[2, j]
                di_pre = dct * g * i * (one - i)
                df_pre = dct * cp * f * (one - f)
                dgates[t, b, j] = di_pre
                dgates[t, b, H + j] = df_pre
                dgates[t, b, 2 * H + j] = dct * i * (one - g * g)
                dgates[t, b, 3 * H + j] = do_pre
                dcp = dct * f
                if peephole:
                    dcp += di_pre * peep[0, j] + df_pre * peep[1, j]
                dc[b, j] = dcp
        np.dot(dgates[t], WhT, dh)  # (B, 4H) @ (4H, H)
    return dgates, dh, dc


@kernel
def lstm_step(x, Wx, Wh, b, peep, h, c, peephole):
    xw = np.dot(x, Wx) + b
    pre = np.dot(h, Wh)
    g = np.empty_like(pre)
    c_new = np.empty_like(c)
    tc = np.empty_like(c)
    h_new = np.empty_like(h)
    _lstm_math(pre, xw, c, peep, peephole, g, c_new, tc, h_new)
    return h_new, c_new


class LSTMCell(Cell):
    gates = 4
    state_size = 2

    def __init__(self, peephole: bool = False):
        self.peephole = peephole
        self.name = "lstm-peephole" if peephole else "lstm"
        self.paper = "Gers & Schmidhuber 2000" if peephole else "Hochreiter & Schmidhuber 1997"

    def param_shapes(self, D, H):
        shapes = super().param_shapes(D, H)
        if self.peephole:
            shapes["peep"] = (3, H)
        return shapes

    def init_params(self, rng, D, H, dtype=np.float32):
        p = super().init_params(rng, D, H, dtype)
        p["b"][H : 2 * H] += 1.0  # forget-gate bias 1: remember by default early in training
        return p

    def _peep(self, p, H, dtype):
        return p["peep"] if self.peephole else np.zeros((3, H), dtype=dtype)

    def recurrence(self, p, xw, state0, keep):
        h0, c0 = state0
        H = h0.shape[1]
        hs, cs, tcs, gates, cT = lstm_forward(xw, p["Wh"], self._peep(p, H, xw.dtype), h0, c0, self.peephole, keep)
        return hs, (hs[-1].copy(), cT), (cs, tcs, gates)

    def recurrence_backward(self, p, cache, dhs, dstateT):
        x, (h0, c0), hs, (cs, tcs, gates) = cache
        H = h0.shape[1]
        dgates, dh0, dc0 = lstm_backward(dhs, dstateT[0], dstateT[1], contiguous_T(p["Wh"]),
                                         self._peep(p, H, hs.dtype), self.peephole, c0, cs, tcs, gates)
        return dgates, (dh0, dc0)

    def extra_grads(self, p, cache, dgates):
        if not self.peephole:
            return {}
        x, (h0, c0), hs, (cs, tcs, gates) = cache
        H = h0.shape[1]
        c_prev = np.concatenate([c0[None], cs[:-1]])  # (T, B, H)
        dpeep = np.empty((3, H), dtype=hs.dtype)
        dpeep[0] = (dgates[:, :, :H] * c_prev).sum(axis=(0, 1))  # dp_i = sum di_pre * c<t-1>
        dpeep[1] = (dgates[:, :, H : 2 * H] * c_prev).sum(axis=(0, 1))  # dp_f = sum df_pre * c<t-1>
        dpeep[2] = (dgates[:, :, 3 * H :] * cs).sum(axis=(0, 1))  # dp_o = sum do_pre * c<t>
        return {"peep": dpeep}

    def step(self, p, x, state):
        h, c = state
        h, c = lstm_step(x, p["Wx"], p["Wh"], p["b"], self._peep(p, h.shape[1], h.dtype), h, c, self.peephole)
        return h, (h, c)
