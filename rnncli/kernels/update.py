"""Fused parameter updates: one pass over each parameter array per step (see rnncli/optim.py)."""

import numpy as np

from rnncli.kernels.jit import kernel


@kernel
def adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step, scale):
    """Adam (Kingma & Ba 2014) on flat arrays; AdamW when `decoupled` (Loshchilov & Hutter 2019).
    g is multiplied by `scale` first (gradient clipping)."""
    bc1 = 1.0 - beta1**step
    bc2 = 1.0 - beta2**step
    for i in range(p.size):
        gi = g[i] * scale
        if not decoupled:
            gi += weight_decay * p[i]
        m[i] = beta1 * m[i] + (1.0 - beta1) * gi
        v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi
        update = (m[i] / bc1) / (np.sqrt(v[i] / bc2) + eps)
        if decoupled:
            update += weight_decay * p[i]
        p[i] -= lr * update


@kernel
def rmsprop_update(p, g, v, lr, alpha, eps, weight_decay, scale):
    for i in range(p.size):
        gi = g[i] * scale + weight_decay * p[i]
        v[i] = alpha * v[i] + (1.0 - alpha) * gi * gi
        p[i] -= lr * gi / (np.sqrt(v[i]) + eps)


@kernel
def sgd_update(p, g, buf, lr, momentum, weight_decay, scale):
    for i in range(p.size):
        gi = g[i] * scale + weight_decay * p[i]
        buf[i] = momentum * buf[i] + gi
        p[i] -= lr * buf[i]
