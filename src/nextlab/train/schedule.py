"""The learning-rate schedule: linear warm-up, then cosine decay to a floor.

A pure function of the step, so a resumed run needs no scheduler state beyond the step itself.

>>> [round(lr_at(s, lr=1.0, steps=10, warmup_steps=2, min_lr_ratio=0.1), 3) for s in (0, 1, 2, 6, 9)]
[0.5, 1.0, 1.0, 0.55, 0.134]
"""

from __future__ import annotations

import math


def lr_at(step: int, lr: float, steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Learning rate for optimizer step `step` (0-based) of `steps`."""
    if step < warmup_steps:
        # (step + 1) so the very first update already moves: lr/warmup, not 0.
        return lr * (step + 1) / warmup_steps
    decay_steps = max(1, steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    min_lr = lr * min_lr_ratio
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)
