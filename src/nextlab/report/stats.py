"""Findings and the intervals they carry, computed from the tables (never typed in).

A `Finding` is one number the report states, with its 95% interval and what it counts, e.g.

    >>> f = proportion("qa_acc_k4", "QA accuracy, facts seen 4 times", correct=7, n=20)
    >>> f.text()
    'QA accuracy, facts seen 4 times: 0.350 (95% CI 0.181–0.567, n = 20)'

Proportions use the Wilson score interval, which stays inside [0, 1] and is sensible at 0/n and
n/n, where the normal approximation collapses to a point.

A verdict compares two findings (`compare`): the difference is resolved only when both are
non-degenerate and their intervals separate. A missing value (an empty bucket), a missing or
zero-width interval (every replicate the same: nothing was measured to vary), or two values that
are both zero resolve nothing, and the comparison says why:

    >>> compare(Finding("a", "ECE, SFT", 0.0, 0.0, 0.0), Finding("b", "ECE, calibrated", 0.1, 0.05, 0.2)).reason
    'ECE, SFT: zero-width interval (0.000 at [0.000, 0.000])'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
ZERO = 1e-9  # below this a value or an interval's width is float rounding of zero (an ECE of 4e-14
#              from answers all given probability ~0 is zero, and its interval no interval at all)


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
    digits: int = 3  # 0 for counts; -k: k significant digits

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
        """This finding is resolved above the other (`compare`: both non-degenerate, intervals apart)."""
        c = compare(self, other)
        return c.resolved and c.higher is self


def degenerate(f: "Finding | None") -> str | None:
    """Why a finding cannot carry a verdict, or None when it can.

    >>> degenerate(Finding("k", "x", 0.3, 0.2, 0.4)) is None, degenerate(Finding("k", "x", math.nan))
    (True, 'x: no value (an empty bucket or an undefined metric)')
    """
    if f is None:
        return "not measured"
    if f.value is None or not math.isfinite(f.value):
        return f"{f.label}: no value (an empty bucket or an undefined metric)"
    if f.n == 0:
        return f"{f.label}: empty (n = 0)"
    if not (math.isfinite(f.lo) and math.isfinite(f.hi)):
        return f"{f.label}: no interval"
    if f.hi - f.lo <= ZERO:
        return f"{f.label}: zero-width interval ({f.value:.3f} at [{f.lo:.3f}, {f.hi:.3f}])"
    return None


@dataclass(frozen=True)
class Comparison:
    """The verdict on two findings: `higher` is the one whose interval lies wholly above the
    other's when `resolved`; `reason` says what was found, or why nothing was."""

    resolved: bool
    higher: "Finding | None"
    reason: str


def compare(a: "Finding | None", b: "Finding | None") -> Comparison:
    """Do the data tell a and b apart? Only when both are non-degenerate and their 95% intervals
    separate (see the module doc).

    >>> c = compare(Finding("a", "k16", 0.9, 0.8, 0.95), Finding("b", "k1", 0.1, 0.05, 0.2))
    >>> c.resolved, c.higher.key
    (True, 'a')
    >>> compare(Finding("a", "x", 0.0, -0.1, 0.1), Finding("b", "y", 0.0, -0.2, 0.1)).reason
    'all-zero values: x and y are both 0'
    >>> compare(Finding("a", "x", 0.5, 0.4, 0.6), Finding("b", "y", 0.45, 0.3, 0.55)).reason
    'x (0.500 [0.400, 0.600]) and y (0.450 [0.300, 0.550]): 95% intervals overlap'
    """
    for f in (a, b):
        why = degenerate(f)
        if why is not None:
            return Comparison(False, None, why)
    assert a is not None and b is not None
    if abs(a.value) <= ZERO and abs(b.value) <= ZERO:
        return Comparison(False, None, f"all-zero values: {a.label} and {b.label} are both 0")
    if a.lo > b.hi:
        return Comparison(True, a, f"{a.label} above {b.label}: 95% intervals do not overlap")
    if b.lo > a.hi:
        return Comparison(True, b, f"{b.label} above {a.label}: 95% intervals do not overlap")
    return Comparison(False, None, f"{a.label} ({a.value:.3f} [{a.lo:.3f}, {a.hi:.3f}]) and {b.label} "
                                   f"({b.value:.3f} [{b.lo:.3f}, {b.hi:.3f}]): 95% intervals overlap")


def _fmt(value: float, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if digits < 0:  # significant digits, for quantities spanning orders of magnitude (e.g. a KL of 1e-9)
        return f"{value:.{-digits}g}"
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
