"""Gated recurrent unit in cuDNN's and PyTorch's form (nn.GRU): the reset gate is applied after
the recurrent product, so each step needs one product instead of the notes' two dependent ones
(kernels/gru.py has the notes' form). Gate order [r, z, n], as nn.GRU, with z = 1 - Γ_u:

    r = σ(W_ir x + b_r + W_hr h<t-1>)
    z = σ(W_iz x + b_z + W_hz h<t-1>)
    n = tanh(W_in x + b_n + r * (W_hn h<t-1> + b_hn))
    h<t> = (1 - z) * n + z * h<t-1>

The extra bias b_hn (`bhn`, (H,)) sits inside the reset gate's product, as in cuDNN.
Backward: dn_pre = dh (1 - z)(1 - n^2); dz_pre = dh (h<t-1> - n) z (1 - z);
          dr_pre = dn_pre * hn * r (1 - r) with hn = W_hn h<t-1> + b_hn;
          the gradient of x @ Wx is [dr, dz, dn]_pre, that of h @ Wh is [dr, dz, r * dn]_pre.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rnncli.kernels.activations import sigmoid, tanh
from rnncli.kernels.jit import inline, kernel
from rnncli.kernels.packed import add_packed_product, packed_product
from rnncli.kernels.packing import pack
from rnncli.kernels.recurrent import (
    Cell,
    gate_blocks,
    held_layer,
    hold,
    input_weights,
    single_step,
    stacked,
    step_times,
)


@inline
def _cudnn_gates(product, xw_t, bhn, rz, hn, n_out, h_prev, h_out):
    """product (B, 3H) holds h<t-1> @ Wh: the gates [r, z] (into rz, (B, 2H)); hn = W_hn h<t-1> + b_hn;
    n; h. Each output is its own array, so that no loop reads and writes one array at two offsets
    (which keeps LLVM from vectorising)."""
    B, H = h_out.shape
    one = h_out.dtype.type(1.0)
    for b in range(B):
        for j in range(2 * H):
            rz[b, j] = sigmoid(product[b, j] + xw_t[b, j])
        for j in range(H):
            hn[b, j] = product[b, 2 * H + j] + bhn[j]
        for j in range(H):
            n_out[b, j] = tanh(xw_t[b, 2 * H + j] + rz[b, j] * hn[b, j])
        for j in range(H):
            z = rz[b, H + j]
            h_out[b, j] = (one - z) * n_out[b, j] + z * h_prev[b, j]


@kernel
def gru_cudnn_forward(xw, Wh_packed, bhn, h0, keep):
    """xw (T, B, 3H), Wh_packed = pack(Wh) (kernels/packed.py), bhn (H,), h0 (B, H) -> hs (T, B, H); gates [r, z]
    (T or 1, B, 2H); n and hn = W_hn h<t-1> + b_hn (T or 1, B, H)."""
    T, B, G3 = xw.shape
    H = G3 // 3
    S = T if keep else 1
    hs = np.empty((T, B, H), dtype=xw.dtype)
    gates = np.empty((S, B, 2 * H), dtype=xw.dtype)
    ns = np.empty((S, B, H), dtype=xw.dtype)
    hns = np.empty((S, B, H), dtype=xw.dtype)
    hW = np.empty((B, G3), dtype=xw.dtype)  # stays in cache (as in lstm_forward)
    for t in range(T):
        s = t if keep else 0
        h_prev = h0 if t == 0 else hs[t - 1]
        packed_product(h_prev, Wh_packed, hW)  # h<t-1> @ Wh, the only product of the step
        _cudnn_gates(hW, xw[t], bhn, gates[s], hns[s], ns[s], h_prev, hs[t])
    return hs, gates, ns, hns


@kernel
def gru_cudnn_backward(dhs, dhT, WhT_packed, h0, hs, gates, ns, hns):
    """-> d(x @ Wx) and d(h @ Wh) pre-activation gradients (T, B, 3H), dh0 (B, H). WhT_packed = pack(Wh^T)."""
    T, B, H = hs.shape
    one = hs.dtype.type(1.0)
    dgx = np.empty((T, B, 3 * H), dtype=hs.dtype)
    dgh = np.empty((T, B, 3 * H), dtype=hs.dtype)
    dh = dhT.copy()
    for t in range(T - 1, -1, -1):
        h_prev = h0 if t == 0 else hs[t - 1]
        g, n, hn, gx, gh = gates[t], ns[t], hns[t], dgx[t], dgh[t]
        dh += dhs[t]
        for b in range(B):
            for j in range(H):
                d = dh[b, j]
                r, z, nj = g[b, j], g[b, H + j], n[b, j]
                dn_pre = d * (one - z) * (one - nj * nj)
                gx[b, H + j] = d * (h_prev[b, j] - nj) * z * (one - z)  # dz_pre
                gx[b, 2 * H + j] = dn_pre
                gx[b, j] = dn_pre * hn[b, j] * r * (one - r)  # dr_pre
                dh[b, j] = d * z  # the direct path to h<t-1>
            for j in range(2 * H):  # the product's gradient: the same for r and z ...
                gh[b, j] = gx[b, j]
            for j in range(H):  # ... and r * dn_pre for the n block
                gh[b, 2 * H + j] = gx[b, 2 * H + j] * g[b, j]
        add_packed_product(gh, WhT_packed, dh)  # + gh @ Wh^T
    return dgx, dgh, dh


class CudnnGRUWeights(NamedTuple):
    """A stack's weights for the single step: b (L, 3H), bhn (L, H), and held (`hold`) Wx0 (D, 3H),
    WxR (L-1, H, 3H), Wh (L, H, 3H). No [Wx; Wh]: the n block's two products enter its gate apart."""

    b: np.ndarray
    bhn: np.ndarray
    Wx0: tuple
    WxR: tuple
    Wh: tuple


@single_step(CudnnGRUWeights)
def gru_cudnn_step(weights, layer, xw, h, c):
    """One step of one layer (one product), h in place."""
    B, H = h.shape
    rz = np.empty((B, 2 * H), dtype=h.dtype)
    hn = np.empty_like(h)
    n = np.empty_like(h)
    hW = step_times(h, held_layer(weights.Wh, layer))
    _cudnn_gates(hW, xw, weights.bhn[layer], rz, hn, n, h.copy(), h)



class CudnnGRUCell(Cell):
    name = "gru-cudnn"
    gates = 3
    paper = "Cho et al. 2014, in cuDNN's / PyTorch's form (reset gate after the product)"
    torch_module = "nn.GRU"

    def onnx_layer(self, p, H):
        """ONNX's GRU with `linear_before_reset=1` (PyTorch's form): [r, z, n] reordered to its `zrh`;
        R's bias is b_hn alone, inside the reset gate."""
        order = [1, 0, 2]
        b = p["b"]
        rb = np.concatenate([np.zeros(2 * H, b.dtype), p["bhn"]])
        arrays = {"W": gate_blocks(p["Wx"].T, H, order), "R": gate_blocks(p["Wh"].T, H, order),
                  "B": np.concatenate([gate_blocks(b, H, order), rb])}
        return "GRU", arrays, {"linear_before_reset": 1}

    def param_shapes(self, D, H):
        return {**super().param_shapes(D, H), "bhn": (H,)}

    def recurrence(self, p, xw, state0, keep):
        hs, gates, ns, hns = gru_cudnn_forward(xw, pack(p["Wh"]), p["bhn"], state0[0], keep)
        return hs, (hs[-1].copy(),), (gates, ns, hns)

    def gate_values(self, saved, H):
        gates = saved[0]  # (T, B, 2H): [r, z], z = 1 - Γ_u
        return {"update": 1 - gates[..., H:], "reset": gates[..., :H]}

    def recurrence_backward(self, p, cache, dhs, dstateT):
        x, state0, hs, (gates, ns, hns) = cache
        dgx, dgh, dh0 = gru_cudnn_backward(dhs, dstateT[0], pack(p["Wh"].T), state0[0], hs, gates, ns, hns)
        return (dgx, dgh), (dh0,)

    def extra_grads(self, p, cache, dgates_h):
        H = dgates_h.shape[2] // 3
        return {"bhn": dgates_h[:, :, 2 * H :].sum(axis=(0, 1))}  # b_hn sits beside W_hn h

    def step_weights(self, layers, packed=True):
        dtype = layers[0]["Wx"].dtype
        Wx0, WxR = input_weights(layers)
        return CudnnGRUWeights(stacked(layers, "b", dtype), stacked(layers, "bhn", dtype), hold(Wx0, packed),
                               hold(WxR, packed), hold(stacked(layers, "Wh", dtype), packed))
