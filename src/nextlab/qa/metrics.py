"""Metrics of answers and confidences, as plain functions of numpy arrays.

Two kinds of input:
- outcomes: `correct` and `abstain` boolean arrays, one entry per question (`wrong` is neither);
- confidences `conf` in [0, 1] with labels `y` (1 = the answer was correct), for the questions
  where a confidence is scored (evaluation passes the attempted answers).

Worked example: 4 questions, 2 correct, 1 wrong, 1 abstained.

>>> import numpy as np
>>> correct = np.array([True, True, False, False]); abstain = np.array([False, False, False, True])
>>> rates(correct, abstain)["hallucination"], rates(correct, abstain)["accuracy_when_attempted"]
(0.25, 0.6666666666666666)
>>> score(correct, abstain, 0.75)     # (1 + 1 - 3 + 0) / 4: a wrong answer costs t/(1-t) = 3
-0.25

An undefined value (accuracy when nothing was attempted, AUROC with one class) is NaN; the
evaluation stage writes it as null.
"""

from __future__ import annotations

import math

import numpy as np

NLL_EPS = 1e-6  # confidences are clipped to [eps, 1 - eps] for NLL and logits: a stated 1.0 that
#                 is wrong costs -log(1e-6) = 13.8 nats instead of infinity


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else math.nan


# ---- outcomes ---------------------------------------------------------------------------------

def rates(correct: np.ndarray, abstain: np.ndarray) -> dict[str, float]:
    """Accuracy, hallucination (wrong / all), abstention, and accuracy when attempted."""
    correct = np.asarray(correct, bool)
    abstain = np.asarray(abstain, bool)
    wrong = ~correct & ~abstain
    attempted = ~abstain
    return {
        "accuracy": _mean(correct),
        "hallucination": _mean(wrong),
        "abstention": _mean(abstain),
        "accuracy_when_attempted": float(correct.sum() / attempted.sum()) if attempted.any() else math.nan,
    }


def wrong_penalty(t: float) -> float:
    """What a wrong answer costs under confidence target t: t / (1 - t), so that answering pays in
    expectation exactly when the chance of being right exceeds t (p - (1 - p) t/(1-t) > 0 <=> p > t).

    >>> wrong_penalty(0.0), wrong_penalty(0.5), wrong_penalty(0.75), round(wrong_penalty(0.9), 6)
    (0.0, 1.0, 3.0, 9.0)
    """
    if not 0.0 <= t < 1.0:
        raise ValueError(f"confidence target t={t} must be in [0, 1)")
    return t / (1.0 - t)


def score(correct: np.ndarray, abstain: np.ndarray, t: float) -> float:
    """Mean score with correct = 1, wrong = -t/(1-t), abstain = 0."""
    correct = np.asarray(correct, bool)
    wrong = ~correct & ~np.asarray(abstain, bool)
    return _mean(correct - wrong_penalty(t) * wrong)


# ---- calibration ------------------------------------------------------------------------------

def reliability_bins(
    conf: np.ndarray, y: np.ndarray, n_bins: int = 10, strategy: str = "width"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty bin: (count, mean confidence, accuracy).

    `width`: bins [0, 1/n], (1/n, 2/n], ..., as scikit-learn's `calibration_curve(strategy=
    "uniform")` (a value on an inner edge falls in the lower bin). `mass`: the questions sorted by
    confidence (stable sort, so ties keep their order) and cut into n nearly equal groups.
    """
    conf = np.asarray(conf, float)
    y = np.asarray(y, float)
    if strategy == "width":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        ids = np.searchsorted(edges[1:-1], conf, side="left")
        groups = [np.flatnonzero(ids == b) for b in range(n_bins)]
    elif strategy == "mass":
        order = np.argsort(conf, kind="stable")
        groups = np.array_split(order, min(n_bins, len(conf))) if len(conf) else []
    else:
        raise ValueError(f"strategy {strategy!r}; allowed: width, mass")
    groups = [g for g in groups if len(g)]
    counts = np.array([len(g) for g in groups], dtype=int)
    mean_conf = np.array([conf[g].mean() for g in groups])
    accuracy = np.array([y[g].mean() for g in groups])
    return counts, mean_conf, accuracy


def ece(conf: np.ndarray, y: np.ndarray, n_bins: int = 10, strategy: str = "width") -> float:
    """Expected calibration error: sum over bins of (share of questions) x |accuracy - confidence|.

    >>> round(ece(np.array([0.9, 0.9, 0.2, 0.2]), np.array([1, 0, 0, 0])), 6)   # bins 0.9: acc .5, 0.2: acc 0
    0.3
    """
    counts, mean_conf, accuracy = reliability_bins(conf, y, n_bins, strategy)
    if not len(counts):
        return math.nan
    return float(np.sum(counts / counts.sum() * np.abs(accuracy - mean_conf)))


def mce(conf: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """Maximum calibration error: the worst non-empty equal-width bin's |accuracy - confidence|."""
    counts, mean_conf, accuracy = reliability_bins(conf, y, n_bins, "width")
    return float(np.max(np.abs(accuracy - mean_conf))) if len(counts) else math.nan


def brier(conf: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error of the confidence against the 0/1 outcome."""
    return _mean((np.asarray(conf, float) - np.asarray(y, float)) ** 2)


def nll(conf: np.ndarray, y: np.ndarray) -> float:
    """Binary negative log-likelihood of the outcomes under the confidences (nats per question)."""
    c = np.clip(np.asarray(conf, float), NLL_EPS, 1.0 - NLL_EPS)
    y = np.asarray(y, float)
    return _mean(-(y * np.log(c) + (1.0 - y) * np.log(1.0 - c)))


def auroc(conf: np.ndarray, y: np.ndarray) -> float:
    """Probability that a correct answer has higher confidence than a wrong one (ties count 1/2);
    NaN unless both outcomes occur. Mann-Whitney U over average ranks.

    >>> auroc(np.array([0.9, 0.8, 0.3, 0.8]), np.array([1, 1, 0, 0]))   # pairs: 1, 1, 1, 0.5
    0.875
    """
    y = np.asarray(y, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = average_ranks(np.asarray(conf, float))
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given the mean of the ranks they span (what `scipy.stats.rankdata` does,
    without scipy's second of import time in every evaluation job).

    >>> average_ranks(np.array([0.9, 0.8, 0.3, 0.8])).tolist()
    [4.0, 2.5, 1.0, 2.5]
    """
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(x)] - 1
    ranks = np.empty(len(x))
    ranks[order] = (first[group] + last[group]) / 2 + 1
    return ranks


def accuracy_coverage(conf: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the k most confident answers, k = 1..n: (coverage k/n, accuracy among the kept).

    Ties are broken by their expectation over random order (within a block of equal confidences
    the correct count grows linearly), so the curve does not depend on row order.

    >>> cov, acc = accuracy_coverage(np.array([0.9, 0.5, 0.5]), np.array([1, 1, 0]))
    >>> cov.tolist(), acc.tolist()
    ([0.3333333333333333, 0.6666666666666666, 1.0], [1.0, 0.75, 0.6666666666666666])
    """
    conf = np.asarray(conf, float)
    y = np.asarray(y, float)
    n = len(conf)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-conf, kind="stable")
    conf, y = conf[order], y[order]
    # Start index of each block of equal confidence, and each position's block.
    starts = np.flatnonzero(np.r_[True, conf[1:] != conf[:-1]])
    block = np.cumsum(np.r_[True, conf[1:] != conf[:-1]]) - 1
    sizes = np.diff(np.r_[starts, n])
    block_mean = np.add.reduceat(y, starts) / sizes
    before = np.r_[0.0, np.cumsum(np.add.reduceat(y, starts))[:-1]]  # correct count before block
    k = np.arange(1, n + 1)
    expected_correct = before[block] + (k - starts[block]) * block_mean[block]
    return k / n, expected_correct / k


def accuracy_coverage_area(conf: np.ndarray, y: np.ndarray) -> float:
    """Area under the accuracy-coverage curve (mean accuracy over k = 1..n): 1 when every correct
    answer is more confident than every wrong one and all are correct; the accuracy itself when
    confidence carries no information."""
    _, acc = accuracy_coverage(conf, y)
    return _mean(acc)


# ---- temperature scaling ----------------------------------------------------------------------

def _logit(conf: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(conf, float), NLL_EPS, 1.0 - NLL_EPS)
    return np.log(c) - np.log1p(-c)


def apply_temperature(conf: np.ndarray, temperature: float) -> np.ndarray:
    """sigmoid(logit(conf) / T): T > 1 softens confidences toward 1/2, T < 1 sharpens them.

    This is temperature scaling of the binary "is my answer right" probability, the form that
    applies to a sequence probability without re-running the model.
    """
    return 1.0 / (1.0 + np.exp(-_logit(conf) / temperature))


def fit_temperature(conf: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The T in `bounds` that minimises NLL of `y` under `apply_temperature(conf, T)`.

    Fitted on a split the metrics are not reported on. With fewer than two questions or only one
    outcome there is nothing to fit and T = 1.
    """
    y = np.asarray(y, float)
    if len(y) < 2 or y.min() == y.max():
        return 1.0
    logits = _logit(conf)

    def loss(log_t: float) -> float:
        return nll(1.0 / (1.0 + np.exp(-logits / math.exp(log_t))), y)

    return float(math.exp(golden_section(loss, math.log(bounds[0]), math.log(bounds[1]))))


def golden_section(f, lo: float, hi: float, tol: float = 1e-6) -> float:
    """The minimiser of a unimodal `f` on [lo, hi], to within `tol` (the NLL of temperature-scaled
    confidences is convex in log T).

    >>> round(golden_section(lambda x: (x - 0.3) ** 2, -1.0, 2.0), 5)
    0.3
    """
    ratio = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    return (a + b) / 2


# ---- behavioural calibration ------------------------------------------------------------------

def audit(guess_conf: np.ndarray, answered: np.ndarray, guess_correct: np.ndarray, t: float) -> dict[str, float]:
    """Does the model answer exactly when its own confidence in its best guess reaches t?

    guess_conf: the model's probability that its best non-abstaining guess is right, for every
    question (also those it abstained on); answered: it did not abstain; guess_correct: the best
    guess is right. Returns the answer rate below and at-or-above t (a behaviourally calibrated
    model: 0 and 1), and the score under t of the model's actual choices beside the score of the
    rule "answer the best guess iff its confidence >= t" (the gap is what mis-set abstention costs).

    >>> r = audit(np.array([0.2, 0.6, 0.9]), np.array([True, False, True]), np.array([False, True, True]), 0.5)
    >>> r["answer_rate_below"], r["answer_rate_above"], r["threshold_score"]
    (1.0, 0.5, 0.6666666666666666)
    """
    g = np.asarray(guess_conf, float)
    answered = np.asarray(answered, bool)
    guess_correct = np.asarray(guess_correct, bool)
    below = g < t
    follow = ~below  # the threshold rule answers these
    return {
        "answer_rate_below": _mean(answered[below]),
        "answer_rate_above": _mean(answered[~below]),
        "share_above": _mean(follow),
        "threshold_score": score(guess_correct & follow, ~follow, t),
    }


# ---- reference policies -----------------------------------------------------------------------

def threshold_policy(guess_conf: np.ndarray, guess_correct: np.ndarray, t: float) -> np.ndarray:
    """Per question, the score under t of the rule "answer the best guess iff its probability
    exceeds t, else abstain": 1 if answered and right, -t/(1-t) if answered and wrong, 0 if not.
    A question with no probability (NaN) is abstained on. No training: it is the best a model's
    own probabilities allow when they are calibrated (answering pays exactly when p > t).

    >>> threshold_policy(np.array([0.2, 0.6, 0.9, np.nan]), np.array([True, False, True, True]), 0.5).tolist()
    [0.0, -1.0, 1.0, 0.0]
    """
    g = np.nan_to_num(np.asarray(guess_conf, float), nan=-np.inf)
    right = np.asarray(guess_correct, bool)
    answer = g > t
    return np.where(answer, np.where(right, 1.0, -wrong_penalty(t)), 0.0)


def oracle_policy(guess_correct: np.ndarray) -> np.ndarray:
    """Per question, the score of the knowledge oracle: answer the best guess iff it is right
    (1), else abstain (0). It is the same under every t: the ceiling of what the model knows.

    >>> oracle_policy(np.array([True, False, True])).tolist()
    [1.0, 0.0, 1.0]
    """
    return np.asarray(guess_correct, bool).astype(float)
