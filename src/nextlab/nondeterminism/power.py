"""How many completions decide the claim, what a run that sees nothing still bounds, and the
flips the measured logit drift predicts (pure functions, no torch).

Under exact determinism no completion ever changes, so one changed completion rejects it. If a
share `rate` of completions would change, n independent completions show at least one with
probability 1 - (1 - rate)^n: the power of the design. For a 1% rate and 95% power::

    >>> completions_for_power(0.01, 0.95)
    299
    >>> round(detection_power(0.01, 299), 4)
    0.9505

When none of n changes, the rate is still bounded: the one-sided 95% Clopper-Pearson bound is
1 - 0.05^(1/n) at k = 0 (the "rule of three", ~3/n)::

    >>> round(upper_bound(0, 299), 5)
    0.00997
    >>> round(upper_bound(3, 100), 4)   # the exact binomial bound at k > 0 (Beta quantile)
    0.0757

From logit drift to flips: a step's greedy choice can flip only if some token gains on the
top-1 token by more than the top-1/top-2 margin, and no token gains more than twice the largest
|logit change| (`drift`). So `margin < 2 * drift` is necessary for a flip (`possible`), and the
share of steps with `margin < drift` is the predicted flip rate (the margin the drift of a
typical pair of logits can close)::

    >>> p = predicted_flips([0.5, 0.01, 0.02, 3.0], [0.0, 0.02, 0.015, 0.1])
    >>> p.steps, p.predicted, p.possible
    (4, 1, 2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


def detection_power(rate: float, n: int) -> float:
    """P(at least one of n independent completions changes) when each changes with `rate`."""
    if not 0 <= rate <= 1 or n < 0:
        raise ValueError(f"rate must be in [0, 1] and n >= 0, got rate={rate}, n={n}")
    return 1.0 - (1.0 - rate) ** n


def completions_for_power(rate: float, power: float = 0.95) -> int:
    """The fewest completions that show a change with probability >= `power` at `rate`."""
    if not 0 < rate < 1 or not 0 < power < 1:
        raise ValueError(f"rate and power must be in (0, 1), got rate={rate}, power={power}")
    n = math.ceil(math.log1p(-power) / math.log1p(-rate))
    # log rounding can leave n one short (or one long) of the exact inequality
    while detection_power(rate, n) < power:
        n += 1
    while n > 1 and detection_power(rate, n - 1) >= power:
        n -= 1
    return n


def upper_bound(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided exact (Clopper-Pearson) upper confidence bound of a rate, k events in n trials."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    if k == n:
        return 1.0
    if k == 0:
        return 1.0 - (1.0 - confidence) ** (1.0 / n)
    from scipy.stats import beta

    return float(beta.ppf(confidence, k + 1, n - k))


def lower_bound(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided exact (Clopper-Pearson) lower confidence bound; 0 at k = 0."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    if k == 0:
        return 0.0
    if k == n:
        return (1.0 - confidence) ** (1.0 / n)
    from scipy.stats import beta

    return float(beta.ppf(1.0 - confidence, k, n - k + 1))


@dataclass(frozen=True)
class PredictedFlips:
    steps: int
    predicted: int  # margin < drift
    possible: int  # margin < 2 * drift: a flip is impossible elsewhere

    @property
    def predicted_rate(self) -> float | None:
        return self.predicted / self.steps if self.steps else None

    @property
    def possible_rate(self) -> float | None:
        return self.possible / self.steps if self.steps else None


def predicted_flips(margin: Sequence[float], drift: Sequence[float]) -> PredictedFlips:
    """Steps whose top-1/top-2 margin (alone) is below the step's max |logit change|, and below
    twice it; `margin` and `drift` are per step, paired."""
    m, d = np.asarray(margin, float), np.asarray(drift, float)
    if m.shape != d.shape:
        raise ValueError(f"margin and drift differ in length: {m.shape} vs {d.shape}")
    # A step whose logits did not move at all (drift 0) cannot flip, even at an exact tie.
    moved = d > 0
    return PredictedFlips(int(m.size), int(((m < d) & moved).sum()), int(((m < 2 * d) & moved).sum()))
