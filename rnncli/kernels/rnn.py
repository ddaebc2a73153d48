"""Vanilla RNN (Elman 1990), tanh or ReLU:

    h<t> = g(W_aa h<t-1> + W_ax x<t> + b_a)        g = tanh  (cell `rnn`) or ReLU (`rnn-relu`)

One gate block (G = 1). In code: pre<t> = xw<t> + h<t-1> @ Wh, with xw = x @ Wx + b for the whole
chunk. Backward: dpre = dh * g'(pre) = dh * (1 - h^2) for tanh, dh * [h > 0] for ReLU;
dh<t-1> = dpre @ Wh^T.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rnncli.kernels.activations import tanh
from rnncli.kernels.jit import inline, kernel
from rnncli.kernels.packed import packed_product
from rnncli.kernels.packing import pack
from rnncli.kernels.recurrent import (
    Cell,
    fused_inputs,
    input_weights,
    single_step,
    stacked,
)


@inline
def _rnn_math(pre, xw_t, relu, h_out):
    """h = g(xw + pre) for one step, (B, H)."""
    B, H = h_out.shape
    zero = h_out.dtype.type(0.0)
    for b in range(B):
        for j in range(H):
            a = xw_t[b, j] + pre[b, j]
            h_out[b, j] = max(a, zero) if relu else tanh(a)


@kernel
def rnn_forward(xw, Wh_packed, h0, relu, keep):
    """xw (T, B, H) input projections, Wh_packed = pack(Wh) (kernels/packed.py), h0 (B, H) -> hs (T, B, H), the
    only thing backward needs. (`keep` is unused: the outputs are all the RNN stores.)"""
    T, B, H = xw.shape
    hs = np.empty((T, B, H), dtype=xw.dtype)
    pre = np.empty((B, H), dtype=xw.dtype)
    for t in range(T):
        h_prev = h0 if t == 0 else hs[t - 1]
        packed_product(h_prev, Wh_packed, pre)  # h<t-1> @ Wh
        _rnn_math(pre, xw[t], relu, hs[t])
    return hs


@kernel
def rnn_backward(dhs, dhT, WhT_packed, hs, relu):
    """dhs (T, B, H) upstream gradients of the outputs, dhT (B, H) of the final state,
    WhT_packed = pack(Wh^T) -> dpre (T, B, H), dh0 (B, H)."""
    T, B, H = hs.shape
    one = hs.dtype.type(1.0)
    dpre = np.empty_like(hs)
    dh = dhT.copy()  # gradient reaching h<t> through the recurrence
    for t in range(T - 1, -1, -1):
        for b in range(B):
            for j in range(H):
                h = hs[t, b, j]
                d = dhs[t, b, j] + dh[b, j]
                if relu:
                    dpre[t, b, j] = d if h > 0 else 0 * d
                else:
                    dpre[t, b, j] = d * (one - h * h)  # tanh' = 1 - h^2
        packed_product(dpre[t], WhT_packed, dh)  # dh<t-1> = dpre<t> @ Wh^T
    return dpre, dh


class RNNWeights(NamedTuple):
    """A stack's weights for the single step: b (L, H), relu (the activation), and [Wx; Wh] per layer
    held (`fused_inputs`: Wx0 (D, H), Wh0 (H, H), WxhR (L-1, 2H, H)), so the layer's input holds
    h<t-1> @ Wh."""

    b: np.ndarray
    relu: bool
    Wx0: tuple
    Wh0: tuple
    WxhR: tuple


@single_step(RNNWeights)
def rnn_step(weights, layer, xw, h, c):
    """One step of one layer: h = g(xw), xw = x<t> @ Wx + h<t-1> @ Wh + b, in place."""
    _rnn_math(np.zeros_like(xw), xw, weights.relu, h)  # (the recurrent product is in xw already)


class RNNCell(Cell):
    gates = 1
    paper = "Elman 1990"

    def __init__(self, relu: bool = False):
        self.relu = relu
        self.name = "rnn-relu" if relu else "rnn"
        self.torch_module = "nn.RNN(nonlinearity='relu')" if relu else "nn.RNN"

    def onnx_layer(self, p, H):
        """ONNX's RNN, its activation Tanh or Relu."""
        b = p["b"]
        return ("RNN", {"W": p["Wx"].T, "R": p["Wh"].T, "B": np.concatenate([b, np.zeros_like(b)])},
                {"activations": ["Relu" if self.relu else "Tanh"]})

    def recurrence(self, p, xw, state0, keep):
        hs = rnn_forward(xw, pack(p["Wh"]), state0[0], self.relu, keep)
        return hs, (hs[-1].copy(),), None

    def recurrence_backward(self, p, cache, dhs, dstateT):
        x, state0, hs, saved = cache
        dpre, dh0 = rnn_backward(dhs, dstateT[0], pack(p["Wh"].T), hs, self.relu)
        return dpre, (dh0,)

    def step_weights(self, layers, packed=True):
        dtype = layers[0]["Wx"].dtype
        return RNNWeights(stacked(layers, "b", dtype), self.relu,
                          *fused_inputs(*input_weights(layers), stacked(layers, "Wh", dtype), packed))
