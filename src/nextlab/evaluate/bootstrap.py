"""95% intervals by the bootstrap: over questions, and over questions and seeds together.

Every post-trained model is trained with several seeds and graded on the same questions. A
headline number is the mean over seeds of the metric on all questions; its interval comes from a
two-level (hierarchical) bootstrap: each replicate draws the questions with replacement (one draw
shared by all seeds, since they answered the same questions) and the seeds with replacement, and
averages the metric over the drawn seeds. The percentile interval of the replicates is reported.
With one seed this is the plain bootstrap over questions.

A replicate's question draw is held as counts: row r of the (replicates, questions) matrix says
how often each question was drawn. A statistic is a function of such a matrix that returns one
value per row and seed, so most metrics are a matrix product (a weighted mean with the counts as
weights) and a thousand replicates cost about as much as one.

>>> import numpy as np
>>> correct = np.array([[1, 0, 1, 1], [1, 0, 0, 1]], float)      # 2 seeds x 4 questions
>>> point, lo, hi = interval(lambda C: weighted_mean(C, np.ones_like(correct), correct), 2, 4, 200, seed=0)
>>> point, lo <= point <= hi
(0.625, True)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

LEVEL = 0.95


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central `level` interval of the finite samples; (nan, nan) if none are finite."""
    samples = np.asarray(samples, float)
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(samples, [tail, 100.0 - tail])
    return float(lo), float(hi)


@functools.lru_cache(maxsize=32)
def _draws(n: int, n_seeds: int, n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Question counts (n_samples, n) and drawn seeds (n_samples, n_seeds), cached so every metric
    of one table is bootstrapped over the same replicates."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_samples, n))
    flat = (idx + n * np.arange(n_samples)[:, None]).ravel()
    counts = np.bincount(flat, minlength=n_samples * n).reshape(n_samples, n).astype(float)
    seeds = rng.integers(0, n_seeds, size=(n_samples, n_seeds))
    counts.setflags(write=False)
    seeds.setflags(write=False)
    return counts, seeds


def weighted_mean(C: np.ndarray, w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per replicate row of counts C (R, n) and seed: sum(C w v) / sum(C w) over questions, with
    w, v of shape (seeds, n); NaN where no question has weight. Returns (R, seeds).

    >>> weighted_mean(np.array([[2.0, 0.0, 1.0]]), np.array([[1.0, 1.0, 0.0]]), np.array([[0.5, 1.0, 9.0]]))
    array([[0.5]])
    """
    w = np.asarray(w, float)
    num = C @ (w * np.nan_to_num(np.asarray(v, float))).T
    den = C @ w.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), math.nan)


def interval(
    stat: Callable[[np.ndarray], np.ndarray],
    n_seeds: int,
    n: int,
    n_samples: int = 1000,
    seed: int = 0,
    level: float = LEVEL,
) -> tuple[float, float, float]:
    """(point, lo, hi): the seed-mean of the statistic on all questions and its bootstrap interval.

    stat(C) -> (R, n_seeds): the metric of each seed for each row of question counts C (R, n).
    A replicate where the metric is undefined for a drawn seed (NaN) averages the others.
    """
    full = np.asarray(stat(np.ones((1, n))), float).reshape(n_seeds)
    point = float(np.mean(full[np.isfinite(full)])) if np.isfinite(full).any() else math.nan
    if n_samples == 0 or n == 0:
        return point, math.nan, math.nan
    counts, seeds = _draws(n, n_seeds, n_samples, seed)
    per_seed = np.asarray(stat(counts), float).reshape(n_samples, n_seeds)
    drawn = np.take_along_axis(per_seed, seeds, axis=1)
    finite = np.isfinite(drawn)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = np.where(finite, drawn, 0.0).sum(1) / finite.sum(1)
    lo, hi = percentile_interval(reps, level)
    return point, lo, hi
