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
(PyTorch's nn.GRU applies its reset gate after the product and writes z = 1 - Γ_u: kernels/gru_cudnn.py.)

Backward, with dh the total gradient reaching c<t>:
    dc~_pre = dh * Γ_u * (1 - c~^2)
    du_pre  = dh * (c~ - c<t-1>) * Γ_u (1 - Γ_u)
    d(rh)   = dc~_pre @ W_cc^T                         (full GRU only)
    dr_pre  = d(rh) * c<t-1> * Γ_r (1 - Γ_r)
    dc<t-1> = dh * (1 - Γ_u) + d(rh) * Γ_r + [du_pre, dr_pre] @ W_(u,r)c^T
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rnncli.kernels.activations import sigmoid, tanh
from rnncli.kernels.blas import matmul
from rnncli.kernels.jit import inline, kernel
from rnncli.kernels.packed import add_packed_product, packed_product
from rnncli.kernels.packing import pack
from rnncli.kernels.recurrent import (
    Cell,
    fused_inputs,
    held_layer,
    hold,
    input_weights,
    single_step,
    stacked,
    step_times,
)

# As in lstm.py, the gate maths runs as short passes over few arrays so that LLVM vectorises it.

# ---- gru-simple ------------------------------------------------------------------------------


@inline
def _simple_gates(product, xw_t, gates):
    """gates (B, 2H) = σ (u) and tanh (c~) of product + xw, where product holds h<t-1> @ Wh
    (a different array: see lstm.py's _activate_gates)."""
    B, G2 = gates.shape
    H = G2 // 2
    for b in range(B):
        for j in range(H):
            gates[b, j] = sigmoid(product[b, j] + xw_t[b, j])
        for j in range(H, 2 * H):
            gates[b, j] = tanh(product[b, j] + xw_t[b, j])


@inline
def _interpolate(u_src, cand_src, offset_u, offset_c, h_prev, h_out):
    """h = u * c~ + (1 - u) * h<t-1>, reading u and c~ at column offsets of their arrays."""
    B, H = h_out.shape
    one = h_out.dtype.type(1.0)
    for b in range(B):
        for j in range(H):
            u = u_src[b, offset_u + j]
            h_out[b, j] = u * cand_src[b, offset_c + j] + (one - u) * h_prev[b, j]


@kernel
def gru_simple_forward(xw, Wh_packed, h0, keep):
    """xw (T, B, 2H), Wh_packed = pack(Wh) (kernels/packed.py), h0 (B, H) -> hs (T, B, H),
    gates [u, c~] (T or 1, B, 2H)."""
    T, B, G2 = xw.shape
    H = G2 // 2
    hs = np.empty((T, B, H), dtype=xw.dtype)
    gates = np.empty((T if keep else 1, B, G2), dtype=xw.dtype)
    hW = np.empty((B, G2), dtype=xw.dtype)  # stays in cache (as in lstm_forward)
    for t in range(T):
        g = gates[t if keep else 0]
        h_prev = h0 if t == 0 else hs[t - 1]
        packed_product(h_prev, Wh_packed, hW)  # h<t-1> @ Wh
        _simple_gates(hW, xw[t], g)
        _interpolate(g, g, 0, H, h_prev, hs[t])
    return hs, gates


@kernel
def gru_simple_backward(dhs, dhT, WhT_packed, h0, hs, gates):
    """-> dgates (T, B, 2H) pre-activation gradients [du, dc~], dh0 (B, H). WhT_packed = pack(Wh^T)."""
    T, B, H = hs.shape
    one = hs.dtype.type(1.0)
    dgates = np.empty_like(gates)
    dh = dhT.copy()
    for t in range(T - 1, -1, -1):
        h_prev = h0 if t == 0 else hs[t - 1]
        g, dg = gates[t], dgates[t]
        dh += dhs[t]
        for b in range(B):
            for j in range(H):
                d = dh[b, j]
                u, c = g[b, j], g[b, H + j]
                dg[b, j] = d * (c - h_prev[b, j]) * u * (one - u)  # du_pre
                dg[b, H + j] = d * u * (one - c * c)  # dc~_pre
                dh[b, j] = d * (one - u)  # the direct path to c<t-1>
        add_packed_product(dg, WhT_packed, dh)  # + dgates<t> @ Wh^T
    return dgates, dh


class SimpleGRUWeights(NamedTuple):
    """A stack's weights for the single step: b (L, 2H), and Wx, Wh held (`fused_inputs`), so the
    layer's input holds h<t-1> @ Wh."""

    b: np.ndarray
    Wx0: tuple
    Wh0: tuple
    WxhR: tuple


@single_step(SimpleGRUWeights)
def gru_simple_step(weights, layer, xw, h, c):
    """One step of one layer, h updated in place."""
    gates = np.empty_like(xw)
    _simple_gates(np.zeros_like(xw), xw, gates)  # (the recurrent product is in xw already)
    _interpolate(gates, gates, 0, gates.shape[1] // 2, h.copy(), h)


# ---- gru (full, the notes' form) ----------------------------------------------------------------


@inline
def _update_relevance(product, xw_t, h_prev, ur, rh):
    """ur (B, 2H) = σ(product + xw) where product holds h<t-1> @ W_(u,r); rh = Γ_r * h<t-1>.
    `product` and `ur` must be different arrays (see lstm.py's _activate_gates)."""
    B, H = rh.shape
    for b in range(B):
        for j in range(2 * H):
            ur[b, j] = sigmoid(product[b, j] + xw_t[b, j])
        for j in range(H):
            rh[b, j] = ur[b, H + j] * h_prev[b, j]


@inline
def _candidate(product, xw_t, cand):
    """cand (B, H) = c~ = tanh(product + xw_c) where product holds (Γ_r * h<t-1>) @ W_cc."""
    B, H = cand.shape
    for b in range(B):
        for j in range(H):
            cand[b, j] = tanh(product[b, j] + xw_t[b, 2 * H + j])


@kernel
def gru_forward(xw, Wh_ur_packed, Wh_c_packed, h0, keep):
    """xw (T, B, 3H), the column blocks W_(u,r) (H, 2H) and W_c (H, H) of Wh packed
    (kernels/packed.py), h0 (B, H) -> hs (T, B, H), ur [Γ_u, Γ_r] (T or 1, B, 2H), cand c~ (T or 1, B, H),
    rhs Γ_r * h<t-1>."""
    T, B, G3 = xw.shape
    H = G3 // 3
    S = T if keep else 1
    hs = np.empty((T, B, H), dtype=xw.dtype)
    ur = np.empty((S, B, 2 * H), dtype=xw.dtype)
    cand = np.empty((S, B, H), dtype=xw.dtype)
    rhs = np.empty((S, B, H), dtype=xw.dtype)
    # The products go to buffers that stay in cache, then the gate maths writes this step's
    # storage (as in lstm_forward).
    hW = np.empty((B, 2 * H), dtype=xw.dtype)
    rhW = np.empty((B, H), dtype=xw.dtype)
    for t in range(T):
        s = t if keep else 0
        h_prev = h0 if t == 0 else hs[t - 1]
        packed_product(h_prev, Wh_ur_packed, hW)  # h<t-1> @ W_(u,r)
        _update_relevance(hW, xw[t], h_prev, ur[s], rhs[s])
        packed_product(rhs[s], Wh_c_packed, rhW)  # the second, dependent product
        _candidate(rhW, xw[t], cand[s])
        _interpolate(ur[s], cand[s], 0, 0, h_prev, hs[t])
    return hs, ur, cand, rhs


@kernel
def gru_backward(dhs, dhT, Wh_urT_packed, Wh_cT_packed, h0, hs, ur, cand):
    """-> d_ur (T, B, 2H) and d_cand (T, B, H) pre-activation gradients, both side by side in
    dgates (T, B, 3H), dh0 (B, H). The transposes of Wh's column blocks W_(u,r)^T and W_c^T come
    packed. The blocks feed the recurrent weight gradient, dgates the input side; copying each step
    into dgates while it is in cache is cheaper than joining the blocks afterwards."""
    T, B, H = hs.shape
    one = hs.dtype.type(1.0)
    d_ur = np.empty_like(ur)
    d_cand = np.empty_like(cand)
    dgates = np.empty((T, B, 3 * H), dtype=hs.dtype)
    dh = dhT.copy()
    drh = np.empty_like(dh)
    for t in range(T - 1, -1, -1):
        h_prev = h0 if t == 0 else hs[t - 1]
        g, c, dg, dc = ur[t], cand[t], d_ur[t], d_cand[t]
        dh += dhs[t]
        for b in range(B):
            for j in range(H):
                d = dh[b, j]
                u, cj = g[b, j], c[b, j]
                dc[b, j] = d * u * (one - cj * cj)  # dc~_pre
                dg[b, j] = d * (cj - h_prev[b, j]) * u * (one - u)  # du_pre
                dh[b, j] = d * (one - u)  # the direct path to c<t-1>
        packed_product(dc, Wh_cT_packed, drh)  # d(Γ_r * h<t-1>) = dc~_pre @ W_cc^T
        for b in range(B):
            for j in range(H):
                r = g[b, H + j]
                dg[b, H + j] = drh[b, j] * h_prev[b, j] * r * (one - r)  # dr_pre
                dh[b, j] += drh[b, j] * r
        add_packed_product(dg, Wh_urT_packed, dh)  # + dgates<t> @ W_(u,r)^T
        for b in range(B):
            for j in range(2 * H):
                dgates[t, b, j] = dg[b, j]
            for j in range(H):
                dgates[t, b, 2 * H + j] = dc[b, j]
    return d_ur, d_cand, dgates, dh


class GRUWeights(NamedTuple):
    """A stack's weights for the single step: b (L, 3H), and held (`hold`) Wx0 (D, 3H), WxR (L-1, H,
    3H), and Wh split into its [u, r] block Wh_ur (L, H, 2H) and its c~ block Wh_c (L, H, H). No
    [Wx; Wh]: the candidate's product waits for the relevance gate."""

    b: np.ndarray
    Wx0: tuple
    WxR: tuple
    Wh_ur: tuple
    Wh_c: tuple


@single_step(GRUWeights)
def gru_step(weights, layer, xw, h, c):
    """One step of one layer: [Γ_u, Γ_r] from h<t-1>, then c~ from Γ_r * h<t-1>; h in place."""
    B, H = h.shape
    ur = np.empty((B, 2 * H), dtype=h.dtype)
    rh = np.empty_like(h)
    _update_relevance(step_times(h, held_layer(weights.Wh_ur, layer)), xw, h, ur, rh)
    cand = np.empty_like(h)
    _candidate(step_times(rh, held_layer(weights.Wh_c, layer)), xw, cand)
    _interpolate(ur, cand, 0, 0, h.copy(), h)


# ---- the cells ----------------------------------------------------------------------------------


class SimpleGRUCell(Cell):
    name = "gru-simple"
    gates = 2
    paper = "Cho et al. 2014 (update gate only)"
    not_in_torch = "nn.GRU has no update-gate-only form"
    not_in_onnx = "ONNX's GRU always has a reset gate (gru-simple has only the update gate)"

    def recurrence(self, p, xw, state0, keep):
        hs, gates = gru_simple_forward(xw, pack(p["Wh"]), state0[0], keep)
        return hs, (hs[-1].copy(),), gates

    def gate_values(self, saved, H):
        return {"update": saved[..., :H]}  # saved: [Γ_u, c~] (T, B, 2H)

    def recurrence_backward(self, p, cache, dhs, dstateT):
        x, state0, hs, gates = cache
        dgates, dh0 = gru_simple_backward(dhs, dstateT[0], pack(p["Wh"].T), state0[0], hs, gates)
        return dgates, (dh0,)

    def step_weights(self, layers, packed=True):
        dtype = layers[0]["Wx"].dtype
        return SimpleGRUWeights(stacked(layers, "b", dtype),
                                *fused_inputs(*input_weights(layers), stacked(layers, "Wh", dtype), packed))


def _split_Wh(Wh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous copies of the [u, r] and c~ column blocks of Wh (H, 3H)."""
    H = Wh.shape[0]
    return np.ascontiguousarray(Wh[:, : 2 * H]), np.ascontiguousarray(Wh[:, 2 * H :])


class GRUCell(Cell):
    name = "gru"
    gates = 3
    paper = "Cho et al. 2014; Chung et al. 2014 (relevance gate before the product)"
    not_in_torch = ("the notes' GRU applies its reset gate before the recurrent product; nn.GRU after it "
                    "(train --cell gru-cudnn for a model PyTorch can run)")

    def onnx_layer(self, p, H):
        """ONNX's GRU with `linear_before_reset=0`: its gates `zrh` are the notes' [Γ_u, Γ_r, c~] with
        z = 1 - Γ_u, so Γ_u's rows are negated (σ(-a) = 1 - σ(a))."""
        b = p["b"]
        sign = np.concatenate([-np.ones(H), np.ones(2 * H)]).astype(b.dtype)
        arrays = {"W": p["Wx"].T * sign[:, None], "R": p["Wh"].T * sign[:, None],
                  "B": np.concatenate([b * sign, np.zeros_like(b)])}
        return "GRU", arrays, {"linear_before_reset": 0}

    def recurrence(self, p, xw, state0, keep):
        H = p["Wh"].shape[0]
        hs, ur, cand, rhs = gru_forward(xw, pack(p["Wh"][:, : 2 * H]), pack(p["Wh"][:, 2 * H :]), state0[0], keep)
        return hs, (hs[-1].copy(),), (ur, cand, rhs)

    def gate_values(self, saved, H):
        ur = saved[0]  # (T, B, 2H): [Γ_u, Γ_r]
        return {"update": ur[..., :H], "relevance": ur[..., H:]}

    def recurrence_backward(self, p, cache, dhs, dstateT):
        x, state0, hs, (ur, cand, rhs) = cache
        H = p["Wh"].shape[0]
        d_ur, d_cand, dgates, dh0 = gru_backward(dhs, dstateT[0], pack(p["Wh"][:, : 2 * H].T),
                                                 pack(p["Wh"][:, 2 * H :].T), state0[0], hs, ur, cand)
        return (dgates, (d_ur, d_cand)), (dh0,)

    def recurrent_weight_grad(self, cache, dgates_h):
        """[u, r] blocks multiply h<t-1>; the c~ block multiplies Γ_r * h<t-1>."""
        x, state0, hs, (ur, cand, rhs) = cache
        d_ur, d_cand = dgates_h
        T, B, H = hs.shape
        dWh = np.empty((H, 3 * H), dtype=hs.dtype)
        dWh[:, : 2 * H] = super().recurrent_weight_grad(cache, d_ur)
        dWh[:, 2 * H :] = matmul(rhs.reshape(T * B, H).T, d_cand.reshape(T * B, H))
        return dWh

    def step_weights(self, layers, packed=True):
        dtype = layers[0]["Wx"].dtype
        blocks = [_split_Wh(lp["Wh"]) for lp in layers]
        Wx0, WxR = input_weights(layers)
        Wh_ur = stacked([{"W": ur} for ur, _ in blocks], "W", dtype)
        Wh_c = stacked([{"W": c} for _, c in blocks], "W", dtype)
        return GRUWeights(stacked(layers, "b", dtype), hold(Wx0, packed), hold(WxR, packed), hold(Wh_ur, packed),
                          hold(Wh_c, packed))
