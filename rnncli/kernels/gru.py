"""Gated recurrent units (Cho et al. 2014; Chung et al. 2014), in the notes' form.

`gru-simple` (update gate only), G = 2, gate order [u, c~]:
    Γ_u   = σ(W_u [c<t-1>, x<t>] + b_u)
    c~<t> = tanh(W_c [c<t-1>, x<t>] + b_c)
    c<t>  = Γ_u * c~<t> + (1 - Γ_u) * c<t-1>            (h = c)

`gru` (full, relevance gate applied BEFORE the recurrent product), G = 3, gate order [u, r, c~]:
    Γ_u   = σ(W_u [c<t-1>, x<t>] + b_u)
    Γ_r   = σ(W_r [c<t-1>, x<t>] + b_r)
    c~<t> = tanh(W_cx x<t> + W_cc (Γ_r * c<t-1>) + b_c)
    c<t>  = Γ_u * c~<t> + (1 - Γ_u) * c<t-1>
This form needs two dependent products per step: [u, r] from h<t-1>, then c~ from r * h<t-1>.
(PyTorch's nn.GRU applies its reset gate after the product and writes z = 1 - Γ_u; not this form.)

Backward, with dh the total gradient reaching c<t>:
    dc~_pre = dh * Γ_u * (1 - c~^2)
    du_pre  = dh * (c~ - c<t-1>) * Γ_u (1 - Γ_u)
    d(rh)   = dc~_pre @ W_cc^T                         (full GRU only)
    dr_pre  = d(rh) * c<t-1> * Γ_r (1 - Γ_r)
    dc<t-1> = dh * (1 - Γ_u) + d(rh) * Γ_r + [du_pre, dr_pre] @ W_(u,r)c^T
"""

from __future__ import annotations

import numpy as np

from rnncli.kernels.activations import sigmoid, tanh
from rnncli.kernels.jit import inline, kernel
from rnncli.kernels.recurrent import Cell, contiguous_T

# ---- gru-simple ------------------------------------------------------------------------------


@inline
def _simple_math(pre, xw_t, h_prev, g_out, h_out):
    """pre = h<t-1> @ Wh (B, 2H) -> gates [u, c~] (B, 2H) and h (B, H)."""
    B, H = h_out.shape
    one = h_out.dtype.type(1.0)
    for b in range(B):
        for j in range(H):
            u = sigmoid(xw_t[b, j] + pre[b, j])
            c = tanh(xw_t[b, H + j] + pre[b, H + j])
            g_out[b, j] = u
            g_out[b, H + j] = c
            h_out[b, j] = u * c + (one - u) * h_prev[b, j]


@kernel
def gru_simple_forward(xw, Wh, h0, keep):
    """xw (T, B, 2H), Wh (H, 2H), h0 (B, H) -> hs (T, B, H), gates (T or 1, B, 2H)."""
    T, B, G2 = xw.shape
    H = G2 // 2
    hs = np.empty((T, B, H), dtype=xw.dtype)
    gates = np.empty((T if keep else 1, B, G2), dtype=xw.dtype)
    pre = np.empty((B, G2), dtype=xw.dtype)
    for t in range(T):
        h_prev = h0 if t == 0 else hs[t - 1]
        np.dot(h_prev, Wh, pre)  # (B, H) @ (H, 2H)
        _simple_math(pre, xw[t], h_prev, gates[t if keep else 0], hs[t])
    return hs, gates


@kernel
def gru_simple_backward(dhs, dhT, WhT, h0, hs, gates):
    """-> dgates (T, B, 2H) pre-activation gradients, dh0 (B, H). WhT is (2H, H)."""
    T, B, H = hs.shape
    one = hs.dtype.type(1.0)
    dgates = np.empty_like(gates)
    dh = dhT.copy()
    direct = np.empty_like(dh)  # dh * (1 - u): the path to c<t-1> that skips the product
    for t in range(T - 1, -1, -1):
        h_prev = h0 if t == 0 else hs[t - 1]
        for b in range(B):
            for j in range(H):
                d = dhs[t, b, j] + dh[b, j]
                u = gates[t, b, j]
                c = gates[t, b, H + j]
                hp = h_prev[b, j]
                dgates[t, b, j] = d * (c - hp) * u * (one - u)  # du_pre
                dgates[t, b, H + j] = d * u * (one - c * c)  # dc~_pre
                direct[b, j] = d * (one - u)
        np.dot(dgates[t], WhT, dh)  # (B, 2H) @ (2H, H)
        dh += direct
    return dgates, dh


@kernel
def gru_simple_step(x, Wx, Wh, b, h):
    xw = np.dot(x, Wx) + b
    pre = np.dot(h, Wh)
    g = np.empty_like(pre)
    h_new = np.empty_like(h)
    _simple_math(pre, xw, h, g, h_new)
    return h_new


# ---- gru (full, the notes' form) ----------------------------------------------------------------


@inline
def _gates_ur(pre_ur, xw_t, h_prev, g_out, rh_out):
    """[u, r] = σ(xw + h<t-1> @ W_(u,r)); rh = r * h<t-1>."""
    B, H = rh_out.shape
    for b in range(B):
        for j in range(H):
            u = sigmoid(xw_t[b, j] + pre_ur[b, j])
            r = sigmoid(xw_t[b, H + j] + pre_ur[b, H + j])
            g_out[b, j] = u
            g_out[b, H + j] = r
            rh_out[b, j] = r * h_prev[b, j]


@inline
def _candidate(pre_c, xw_t, h_prev, g_out, h_out):
    """c~ = tanh(xw_c + (r * h<t-1>) @ W_cc); h = u * c~ + (1 - u) * h<t-1>."""
    B, H = h_out.shape
    one = h_out.dtype.type(1.0)
    for b in range(B):
        for j in range(H):
            c = tanh(xw_t[b, 2 * H + j] + pre_c[b, j])
            u = g_out[b, j]
            g_out[b, 2 * H + j] = c
            h_out[b, j] = u * c + (one - u) * h_prev[b, j]


@kernel
def gru_forward(xw, Wh_ur, Wh_c, h0, keep):
    """xw (T, B, 3H), Wh_ur (H, 2H), Wh_c (H, H) contiguous blocks of Wh, h0 (B, H)
    -> hs (T, B, H), gates [u, r, c~] (T or 1, B, 3H), rhs = r * h<t-1> (T or 1, B, H)."""
    T, B, G3 = xw.shape
    H = G3 // 3
    S = T if keep else 1
    hs = np.empty((T, B, H), dtype=xw.dtype)
    gates = np.empty((S, B, G3), dtype=xw.dtype)
    rhs = np.empty((S, B, H), dtype=xw.dtype)
    pre_ur = np.empty((B, 2 * H), dtype=xw.dtype)
    pre_c = np.empty((B, H), dtype=xw.dtype)
    for t in range(T):
        s = t if keep else 0
        h_prev = h0 if t == 0 else hs[t - 1]
        np.dot(h_prev, Wh_ur, pre_ur)  # (B, H) @ (H, 2H)
        _gates_ur(pre_ur, xw[t], h_prev, gates[s], rhs[s])
        np.dot(rhs[s], Wh_c, pre_c)  # (B, H) @ (H, H)
        _candidate(pre_c, xw[t], h_prev, gates[s], hs[t])
    return hs, gates, rhs


@kernel
def gru_backward(dhs, dhT, Wh_urT, Wh_cT, h0, hs, gates):
    """-> dgates (T, B, 3H) pre-activation gradients [du, dr, dc~], dh0 (B, H).
    Wh_urT (2H, H) and Wh_cT (H, H) are contiguous transposes."""
    T, B, H = hs.shape
    one = hs.dtype.type(1.0)
    dgates = np.empty_like(gates)
    dh = dhT.copy()
    direct = np.empty_like(dh)
    drh = np.empty_like(dh)
    dur = np.empty((B, 2 * H), dtype=hs.dtype)
    dcand = np.empty((B, H), dtype=hs.dtype)
    for t in range(T - 1, -1, -1):
        h_prev = h0 if t == 0 else hs[t - 1]
        for b in range(B):
            for j in range(H):
                d = dhs[t, b, j] + dh[b, j]
                u = gates[t, b, j]
                c = gates[t, b, 2 * H + j]
                dcand[b, j] = d * u * (one - c * c)
                dur[b, j] = d * (c - h_prev[b, j]) * u * (one - u)
                direct[b, j] = d * (one - u)
        np.dot(dcand, Wh_cT, drh)  # d(r * h<t-1>) = dc~_pre @ W_cc^T
        for b in range(B):
            for j in range(H):
                r = gates[t, b, H + j]
                dur[b, H + j] = drh[b, j] * h_prev[b, j] * r * (one - r)
                direct[b, j] += drh[b, j] * r
                dgates[t, b, j] = dur[b, j]
                dgates[t, b, H + j] = dur[b, H + j]
                dgates[t, b, 2 * H + j] = dcand[b, j]
        np.dot(dur, Wh_urT, dh)  # (B, 2H) @ (2H, H)
        dh += direct
    return dgates, dh


@kernel
def gru_step(x, Wx, Wh_ur, Wh_c, b, h):
    xw = np.dot(x, Wx) + b
    B, H = h.shape
    g = np.empty((B, 3 * H), dtype=h.dtype)
    rh = np.empty_like(h)
    h_new = np.empty_like(h)
    _gates_ur(np.dot(h, Wh_ur), xw, h, g, rh)
    _candidate(np.dot(rh, Wh_c), xw, h, g, h_new)
    return h_new


# ---- the cells ----------------------------------------------------------------------------------


class SimpleGRUCell(Cell):
    name = "gru-simple"
    gates = 2
    paper = "Cho et al. 2014 (update gate only)"

    def recurrence(self, p, xw, state0, keep):
        hs, gates = gru_simple_forward(xw, p["Wh"], state0[0], keep)
        return hs, (hs[-1].copy(),), gates

    def recurrence_backward(self, p, cache, dhs, dstateT):
        x, state0, hs, gates = cache
        dgates, dh0 = gru_simple_backward(dhs, dstateT[0], contiguous_T(p["Wh"]), state0[0], hs, gates)
        return dgates, (dh0,)

    def step(self, p, x, state):
        h = gru_simple_step(x, p["Wx"], p["Wh"], p["b"], state[0])
        return h, (h,)


def _split_Wh(Wh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous copies of the [u, r] and c~ column blocks of Wh (H, 3H)."""
    H = Wh.shape[0]
    return np.ascontiguousarray(Wh[:, : 2 * H]), np.ascontiguousarray(Wh[:, 2 * H :])


class GRUCell(Cell):
    name = "gru"
    gates = 3
    paper = "Cho et al. 2014; Chung et al. 2014 (relevance gate before the product)"

    def recurrence(self, p, xw, state0, keep):
        Wh_ur, Wh_c = _split_Wh(p["Wh"])
        hs, gates, rhs = gru_forward(xw, Wh_ur, Wh_c, state0[0], keep)
        return hs, (hs[-1].copy(),), (gates, rhs)

    def recurrence_backward(self, p, cache, dhs, dstateT):
        x, state0, hs, (gates, rhs) = cache
        Wh_ur, Wh_c = _split_Wh(p["Wh"])
        dgates, dh0 = gru_backward(dhs, dstateT[0], contiguous_T(Wh_ur), contiguous_T(Wh_c), state0[0], hs, gates)
        return dgates, (dh0,)

    def recurrent_weight_grad(self, cache, dgates):
        """[u, r] blocks multiply h<t-1>; the c~ block multiplies r * h<t-1>."""
        x, state0, hs, (gates, rhs) = cache
        T, B, H = hs.shape
        dWh = np.empty((H, 3 * H), dtype=hs.dtype)
        dWh[:, : 2 * H] = super().recurrent_weight_grad(cache, dgates[:, :, : 2 * H])
        dWh[:, 2 * H :] = rhs.reshape(T * B, H).T @ dgates[:, :, 2 * H :].reshape(T * B, H)
        return dWh

    def step(self, p, x, state):
        Wh_ur, Wh_c = _split_Wh(p["Wh"])
        h = gru_step(x, p["Wx"], Wh_ur, Wh_c, p["b"], state[0])
        return h, (h,)
