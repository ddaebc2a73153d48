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
    """sqrt(sum of every gradient's squares): each array's sum on one core (spread over the plan's),
    then the arrays' in name order, so the same on any cores."""
    from rnncli.execution.cores import whole_on_cores
    from rnncli.kernels.blas import sum_squares
    from rnncli.kernels.output import RowGradient

    flat = [np.ascontiguousarray(g.values if isinstance(g, RowGradient) else g).reshape(-1) for g in grads.values()]
    squares = [0.0] * len(flat)

    def square(i: int) -> None:
        squares[i] = sum_squares(flat[i])

    whole_on_cores(square, list(range(len(flat))), lambda i: flat[i].size)
    return math.sqrt(sum(squares))


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
        from rnncli.execution.cores import elementwise_on_cores
        from rnncli.kernels.output import RowGradient
        from rnncli.kernels.update import adam_update, adam_update_rows, rmsprop_update, sgd_update

        norm = global_norm(grads)
        if not math.isfinite(norm):
            return norm  # leave params untouched: the caller stops the run
        scale = min(1.0, self.clip / (norm + 1e-12)) if self.clip > 0 else 1.0
        self.step_count += 1
        dense = []
        for name, p in params.items():
            g = grads[name]
            if isinstance(g, RowGradient):
                if self.kind in ("adam", "adamw"):  # the embedding of a word-level model: its few rows read
                    adam_update_rows(p, g.rows, g.values, self.state[f"m.{name}"], self.state[f"v.{name}"],
                                     self.lr, self.betas[0], self.betas[1], self.eps, self.weight_decay,
                                     self.kind == "adamw", self.step_count, scale)
                    continue
                g = g.dense()
            slots = [self.state[f"{slot}.{name}"].reshape(-1) for slot in SLOTS[self.kind]]
            dense.append((p.reshape(-1), np.ascontiguousarray(g).reshape(-1), *slots))
        if self.kind in ("adam", "adamw"):
            def update(p, g, m, v):
                adam_update(p, g, m, v, self.lr, self.betas[0], self.betas[1], self.eps, self.weight_decay,
                            self.kind == "adamw", self.step_count, scale)
        elif self.kind == "rmsprop":
            def update(p, g, v):
                rmsprop_update(p, g, v, self.lr, 0.99, self.eps, self.weight_decay, scale)
        else:
            def update(p, g, buf):
                sgd_update(p, g, buf, self.lr, self.momentum, self.weight_decay, scale)
        elementwise_on_cores(update, dense)  # each element's update its own: the same on any cores
        return norm
