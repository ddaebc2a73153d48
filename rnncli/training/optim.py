"""Optimizers (Adam, AdamW, SGD with momentum, RMSprop) and global gradient-norm clipping.

State lives in plain arrays named `<slot>.<param name>` plus a step count, so checkpoints store it
as it is and a resumed run continues bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

# The state arrays of each optimizer (config.py's OPTIMIZERS).
SLOTS = {"adam": ("m", "v"), "adamw": ("m", "v"), "sgd": ("momentum",), "rmsprop": ("v",)}


def global_norm(grads: dict) -> float:
    from rnncli.kernels.blas import sum_squares
    from rnncli.kernels.output import RowGradient

    return math.sqrt(sum(sum_squares(np.ascontiguousarray(g.values if isinstance(g, RowGradient) else g)
                                     .reshape(-1)) for g in grads.values()))


class Optimizer:
    def __init__(self, kind: str, params: dict[str, np.ndarray], lr: float, weight_decay: float = 0.0,
                 clip: float = 0.0, momentum: float = 0.9, betas=(0.9, 0.999), eps: float = 1e-8):
        self.kind, self.lr, self.weight_decay, self.clip = kind, lr, weight_decay, clip
        self.momentum, self.betas, self.eps = momentum, betas, eps
        self.step_count = 0
        self.state = {f"{slot}.{name}": np.zeros_like(p) for slot in SLOTS[kind] for name, p in params.items()}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> float:
        """Clip the gradients' global norm to `clip` (0 = off), update params in place; returns the
        norm before clipping. A non-finite norm changes nothing."""
        from rnncli.kernels.output import RowGradient
        from rnncli.kernels.update import adam_update, adam_update_rows, rmsprop_update, sgd_update

        norm = global_norm(grads)
        if not math.isfinite(norm):
            return norm  # leave params untouched: the caller stops the run
        scale = min(1.0, self.clip / (norm + 1e-12)) if self.clip > 0 else 1.0
        self.step_count += 1
        for name, p in params.items():
            g = grads[name]
            if isinstance(g, RowGradient):
                if self.kind in ("adam", "adamw"):  # the embedding of a word-level model: its few rows read
                    adam_update_rows(p, g.rows, g.values, self.state[f"m.{name}"], self.state[f"v.{name}"],
                                     self.lr, self.betas[0], self.betas[1], self.eps, self.weight_decay,
                                     self.kind == "adamw", self.step_count, scale)
                    continue
                g = g.dense()
            flat_p, flat_g = p.reshape(-1), np.ascontiguousarray(g).reshape(-1)
            if self.kind in ("adam", "adamw"):
                adam_update(flat_p, flat_g, self.state[f"m.{name}"].reshape(-1), self.state[f"v.{name}"].reshape(-1),
                            self.lr, self.betas[0], self.betas[1], self.eps, self.weight_decay,
                            self.kind == "adamw", self.step_count, scale)
            elif self.kind == "rmsprop":
                rmsprop_update(flat_p, flat_g, self.state[f"v.{name}"].reshape(-1), self.lr, 0.99, self.eps,
                               self.weight_decay, scale)
            else:
                sgd_update(flat_p, flat_g, self.state[f"momentum.{name}"].reshape(-1), self.lr, self.momentum,
                           self.weight_decay, scale)
        return norm
