"""Rewards of the post-training schemes, for one graded answer.

| scheme          | correct | wrong     | abstain |
|-----------------|---------|-----------|---------|
| binary          | 1       | 0         | 0       |
| penalized-<t>   | 1       | -t/(1-t)  | 0       |
| calibrated      | 1 - (q-1)^2 | -q^2  | -q^2    |

`calibrated` is RLCR's reward (Damani et al., 2025): correctness minus the Brier penalty of the
stated confidence q. An abstention counts as not correct, so "I don't know" with q = 0 scores 0,
like a wrong answer stated with q = 0. A missing or unreadable confidence is scored as the worst
statement, q = 1 - correct, so the format is learned rather than skipped. `none` trains nothing and
has no reward.

>>> from nextlab.config.posttrain import parse_scheme
>>> reward(parse_scheme("penalized-0.75"), "wrong")
-3.0
>>> round(reward(parse_scheme("calibrated"), "correct", 0.7), 6)   # 1 - 0.09
0.91
>>> reward(parse_scheme("calibrated"), "wrong", None)    # no confidence stated: worst case
-1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nextlab.config.posttrain import Scheme
from nextlab.qa.grading import GRADES


def reward(scheme: Scheme, grade: str, stated: float | None = None) -> float:
    if grade not in GRADES:
        raise ValueError(f"grade {grade!r}; allowed: {list(GRADES)}")
    correct = grade == "correct"
    if scheme.kind == "binary":
        return 1.0 if correct else 0.0
    if scheme.kind == "penalized":
        assert scheme.t is not None
        if grade == "abstain":
            return 0.0
        return 1.0 if correct else -scheme.t / (1.0 - scheme.t)
    if scheme.kind == "calibrated":
        c = 1.0 if correct else 0.0
        q = (1.0 - c) if stated is None else float(stated)
        return c - (q - c) ** 2
    raise ValueError(f"scheme {scheme.name!r} has no reward (it trains nothing)")


def reward_range(scheme: Scheme) -> float:
    """The best reward minus the worst under a scheme (over every grade and stated confidence).

    >>> from nextlab.config.posttrain import parse_scheme
    >>> reward_range(parse_scheme("penalized-0.75")), reward_range(parse_scheme("calibrated"))
    (4.0, 2.0)
    """
    values = [reward(scheme, g, stated) for g in GRADES for stated in (0.0, 1.0)]  # stated: calibrated only
    return max(values) - min(values)


def rewards(scheme: Scheme, grades: Sequence[str], stated: Sequence[float | None] | None = None) -> np.ndarray:
    """`reward` for each of several answers."""
    stated = stated if stated is not None else [None] * len(grades)
    return np.array([reward(scheme, g, q) for g, q in zip(grades, stated)], dtype=float)
