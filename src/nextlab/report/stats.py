"""Findings and the intervals they carry, computed from the tables (never typed in).

A `Finding` is one number the report states, with its 95% interval and what it counts, e.g.

    >>> f = proportion("qa_acc_k4", "QA accuracy, facts seen 4 times", correct=7, n=20)
    >>> f.text()
    'QA accuracy, facts seen 4 times: 0.350 (95% CI 0.181–0.567, n = 20)'

Proportions use the Wilson score interval, which stays inside [0, 1] and is sensible at 0/n and
n/n, where the normal approximation collapses to a point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Finding:
    key: str  # a flat metric key, stable across runs of a study (findings.json)
    label: str
    value: float
    lo: float = math.nan
    hi: float = math.nan
    n: int | None = None
    unit: str = ""
    interval: str = "95% CI"
    digits: int = 3  # 0 for counts

    def text(self) -> str:
        digits = self.digits
        unit = f" {self.unit}" if self.unit else ""
        parts = []
        if math.isfinite(self.lo) and math.isfinite(self.hi):
            parts.append(f"{self.interval} {self.lo:.{max(digits, 3)}f}–{self.hi:.{max(digits, 3)}f}")
        if self.n is not None:
            parts.append(f"n = {self.n}")
        extra = f" ({', '.join(parts)})" if parts else ""
        return f"{self.label}: {_fmt(self.value, digits)}{unit}{extra}"

    def metrics(self) -> dict[str, float]:
        """Flat keys for findings.json: value, and the interval where there is one."""
        out = {self.key: self.value}
        if math.isfinite(self.lo) and math.isfinite(self.hi):
            out[f"{self.key}_lo"] = self.lo
            out[f"{self.key}_hi"] = self.hi
        return out

    def above(self, other: "Finding") -> bool:
        """This interval lies wholly above the other's: a difference the data resolve."""
        return self.lo > other.hi


def _fmt(value: float, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion correct/n.

    >>> [round(x, 3) for x in wilson(0, 12)]
    [0.0, 0.242]
    """
    if n <= 0:
        return math.nan, math.nan
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0/n and n/n the bound is exactly 0 or 1 (the formula leaves rounding dust there).
    lo = 0.0 if correct == 0 else max(0.0, centre - half)
    hi = 1.0 if correct == n else min(1.0, centre + half)
    return lo, hi


def proportion(key: str, label: str, correct: int, n: int) -> Finding:
    lo, hi = wilson(correct, n)
    return Finding(key, label, correct / n if n else math.nan, lo, hi, n)


def mean_interval(key: str, label: str, values: np.ndarray, unit: str = "", interval: str = "95% CI") -> Finding:
    """Mean with a normal-approximation 95% interval (mean ± 1.96 standard errors)."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return Finding(key, label, math.nan, n=0, unit=unit, interval=interval)
    mean = float(values.mean())
    if n < 2:
        return Finding(key, label, mean, n=n, unit=unit, interval=interval)
    half = Z95 * float(values.std(ddof=1)) / math.sqrt(n)
    return Finding(key, label, mean, mean - half, mean + half, n, unit, interval)
