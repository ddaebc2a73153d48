"""The learning-rate schedule: a budget known in advance is spent as a warm-up and a decay that
reaches its floor when the budget ends.

    lr<step> = lr * warm(step) * decay(p)
    warm(step) = min(1, (step + 1) / warmup)                 linear warm-up over `warmup` steps (0 = none)
    decay(p)   = 1                                           constant
               = 1 - (1 - FLOOR) p                           linear
               = FLOOR + (1 - FLOOR) (1 + cos(pi p)) / 2     cosine (Loshchilov & Hutter 2017, one cycle)
               = 1 - (1 - FLOOR) max(0, p - (1 - C)) / C     cooldown: constant, then linear over the
                                                             budget's last share C (warm-up, stable,
                                                             decay: Hu et al. 2024); the default,
                                                             measured best (bench/README.md)

p in [0, 1] is how much of the budget is spent: steps over the run's total steps (--epochs,
--max-steps), or seconds over --max-time, whichever is further along. A step-based schedule is a
function of the step alone, so an exact resume continues it exactly; a time-based one follows the
clock, as the budget does.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cooldown", "cosine", "linear")
FLOOR = 0.1  # the decay ends at a tenth of the learning rate
COOLDOWN = 0.25  # the share of the budget the cooldown decays over (0.15 and 0.4 measured no better)


def lr_factor(schedule: str, warmup: int, step: int, progress: float) -> float:
    """The multiplier of the learning rate at `step` (0-based) with `progress` p of the budget spent."""
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    p = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        decay = 1.0 - (1.0 - FLOOR) * p
    elif schedule == "cooldown":
        decay = 1.0 - (1.0 - FLOOR) * max(0.0, p - (1.0 - COOLDOWN)) / COOLDOWN
    elif schedule == "cosine":
        decay = FLOOR + (1.0 - FLOOR) * 0.5 * (1.0 + math.cos(math.pi * p))
    else:
        decay = 1.0
    return warm * decay
