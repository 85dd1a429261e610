"""From per-question answer tables to the flat metrics of one model and scheme.

Input: one answers table per seed (the rows `answers.parquet` holds, see docs/formats.md), all on
the same questions. Every headline number is the mean over seeds of the metric on all evaluation
questions, with a 95% interval from the bootstrap over questions and seeds (`bootstrap.interval`);
`<key>_lo` and `<key>_hi` hold the interval. With one seed it is the bootstrap over questions.

Which questions each metric reads:
- rates and scores: every evaluation question (seen people of every mention count, and never-seen
  names, where the right move is "I don't know");
- calibration (ECE, MCE, Brier, NLL, AUROC, accuracy-coverage area): the attempted answers, with
  label 1 when the answer is correct; `cand_*` use the candidate-normalised confidence, `stated_*`
  the confidence a calibrated model writes (null for models that state none). `ece_mass` and
  `aurc` are ranked metrics without a count-matrix form: they are reported without an interval;
- `ece_ts`: ECE after temperature scaling fitted on the calibration split's attempted answers
  (a split never reported on), the temperature held fixed in the bootstrap;
- the behavioural audit (`audit_t<t>_*`, see `metrics.audit`): every question, by the
  candidate-normalised confidence of the best guess;
- reference policies, no training (`metrics.threshold_policy`, `metrics.oracle_policy`): every
  question with a best guess; `ref_threshold_t<t>` answers the best guess iff its sequence
  probability exceeds t, `ref_threshold_cand_t<t>` iff its candidate-normalised probability does,
  `ref_oracle` iff it is right (the score of perfect knowledge of one's own knowledge);
- `<bucket>.*`: the same rates inside one mention-count bucket (`k1`, `k2`, ..., `unseen`), and
  `singleton_rate` (the share of seen facts mentioned once) beside `k1.hallucination` (Kalai et
  al., 2025: hallucinations on such facts are bounded below by the singleton rate).

Keys are the same for every model and scheme; an undefined value is NaN (null in JSON).

The evaluate summary stage is `run(study, Inputs(answers, data), out)` at the end of this file
(`nextlab evaluate --summary`): every scheme and seed of the study's models, from their answers
tables, to one flat metrics.json keyed `<model>/<scheme>/<key>`, summary.parquet, every answer in
one answers.parquet, and the figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextlab.errors import NextlabError
from nextlab.evaluate.bootstrap import interval, weighted_mean
from nextlab.io import atomic_path, json_safe, read_json, write_json
from nextlab.qa import metrics as M

UNSEEN = "unseen"


def bucket_of(mentions: int) -> str:
    """`k<mentions>` for seen facts, `unseen` for never-seen names.

    >>> bucket_of(1), bucket_of(16), bucket_of(0)
    ('k1', 'k16', 'unseen')
    """
    return UNSEEN if int(mentions) == 0 else f"k{int(mentions)}"


def bucket_sort_key(name: str) -> tuple[int, int]:
    return (1, 0) if name == UNSEEN else (0, int(name[1:]))


def _fmt(t: float) -> str:
    return f"{t:g}"


def _stack(frames: Sequence[pd.DataFrame], column: str, dtype=float) -> np.ndarray:
    return np.stack([f[column].to_numpy(dtype) for f in frames])


def align(frames: Sequence[pd.DataFrame]) -> list[pd.DataFrame]:
    """The seeds' tables in one question order; they must hold the same questions."""
    if not frames:
        raise NextlabError("no answer tables to summarise")
    ordered = [f.sort_values("question_id", kind="stable").reset_index(drop=True) for f in frames]
    ids = ordered[0]["question_id"].tolist()
    for f in ordered[1:]:
        if f["question_id"].tolist() != ids:
            raise NextlabError("the answer tables of different seeds hold different questions")
    return ordered


class _Arrays:
    """(seeds, questions) arrays of one scheme's answers."""

    def __init__(self, frames: Sequence[pd.DataFrame]):
        self.S = len(frames)
        self.n = len(frames[0])
        grades = _stack(frames, "grade", object)
        self.correct = (grades == "correct").astype(float)
        self.abstain = (grades == "abstain").astype(float)
        self.attempted = 1.0 - self.abstain
        self.wrong = self.attempted * (1.0 - self.correct)
        self.conf = _stack(frames, "confidence")
        self.cand = _stack(frames, "cand_confidence")
        self.stated = _stack(frames, "stated_confidence")
        self.guess_conf = _stack(frames, "guess_confidence")
        self.guess_seq = _stack(frames, "guess_seq_confidence")
        self.guess_correct = _stack(frames, "guess_correct", bool).astype(float)
        self.seen = frames[0]["seen"].to_numpy(bool)
        self.ones = np.ones((self.S, self.n))


# ---- statistics of count matrices (see bootstrap): each returns (replicates, seeds) -----------

def _ece_stat(w: np.ndarray, conf: np.ndarray, y: np.ndarray, n_bins: int, worst: bool = False):
    """Equal-width ECE (or MCE with `worst`) over the questions with weight w, as in
    `metrics.ece`: sum over bins of |sum (y - conf)| / total weight."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], np.nan_to_num(conf), side="left")
    gaps = np.nan_to_num(y - conf)

    def stat(C: np.ndarray) -> np.ndarray:
        total = C @ w.T
        nums, cnts = [], []
        for k in range(n_bins):
            in_bin = w * (ids == k)
            nums.append(C @ (in_bin * gaps).T)
            cnts.append(C @ in_bin.T)
        num, cnt = np.abs(np.stack(nums)), np.stack(cnts)  # (bins, R, S)
        with np.errstate(invalid="ignore", divide="ignore"):
            if worst:
                gap = np.where(cnt > 0, num / np.where(cnt > 0, cnt, 1.0), -np.inf).max(0)
                return np.where(total > 0, gap, math.nan)
            return np.where(total > 0, num.sum(0) / np.where(total > 0, total, 1.0), math.nan)

    return stat


def auroc_stat(w: np.ndarray, conf: np.ndarray, y: np.ndarray):
    """AUROC with the counts as multiplicities: sum over (correct i, wrong j) of
    m_i m_j [c_i > c_j] (+1/2 for ties), over (sum m_i)(sum m_j)."""
    parts = []
    for s in range(w.shape[0]):
        pos = np.flatnonzero((w[s] > 0) & (y[s] > 0))
        neg = np.flatnonzero((w[s] > 0) & (y[s] == 0))
        c = conf[s]
        wins = (c[pos][:, None] > c[neg][None, :]) + 0.5 * (c[pos][:, None] == c[neg][None, :])
        parts.append((pos, neg, wins))

    def stat(C: np.ndarray) -> np.ndarray:
        out = np.full((C.shape[0], len(parts)), math.nan)
        for s, (pos, neg, wins) in enumerate(parts):
            if not len(pos) or not len(neg):
                continue
            u = ((C[:, pos] @ wins) * C[:, neg]).sum(1)
            pairs = C[:, pos].sum(1) * C[:, neg].sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[:, s] = np.where(pairs > 0, u / np.where(pairs > 0, pairs, 1.0), math.nan)
        return out

    return stat


def _mean_stat(w: np.ndarray, v: np.ndarray):
    return lambda C: weighted_mean(C, w, v)


def _point(a: _Arrays, usable: np.ndarray, conf: np.ndarray,
           metric: Callable[[np.ndarray, np.ndarray], float]) -> float:
    """Mean over seeds of a metric with no count-matrix form (no interval)."""
    values = []
    for s in range(a.S):
        sel = usable[s] > 0
        values.append(metric(conf[s, sel], a.correct[s, sel]) if sel.any() else math.nan)
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def scheme_metrics(
    frames: Sequence[pd.DataFrame],
    calibration_frames: Sequence[pd.DataFrame] | None,
    targets: Sequence[float],
    bins: int,
    n_boot: int,
    seed: int,
    singleton_rate: float | None = None,
    buckets: Sequence[str] | None = None,
) -> dict[str, float | None]:
    """All metrics of one (model, scheme) over its seeds; see the module docstring."""
    frames = align(frames)
    a = _Arrays(frames)
    out: dict[str, float] = {"n_questions": float(a.n), "n_seeds": float(a.S)}

    def put(key: str, make: Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]],
            sub: np.ndarray | None = None) -> None:
        """`make(columns)` builds the statistic on those questions (all, or one bucket's)."""
        cols = np.arange(a.n) if sub is None else sub
        value, lo, hi = interval(make(cols), a.S, len(cols), n_boot, seed)
        out[key], out[f"{key}_lo"], out[f"{key}_hi"] = value, lo, hi

    def mean_of(w: np.ndarray, v: np.ndarray):
        return lambda cols: _mean_stat(w[:, cols], v[:, cols])

    put("accuracy", mean_of(a.ones, a.correct))
    put("hallucination", mean_of(a.ones, a.wrong))
    put("abstention", mean_of(a.ones, a.abstain))
    put("accuracy_when_attempted", mean_of(a.attempted, a.correct))
    for t in targets:
        put(f"score_t{_fmt(t)}", mean_of(a.ones, a.correct - M.wrong_penalty(t) * a.wrong))
    seen_w = a.ones * a.seen
    put("best_guess_accuracy", mean_of(seen_w, a.guess_correct))

    # Calibration of the attempted answers.
    def calibration(prefix: str, conf: np.ndarray, full: bool) -> None:
        usable = a.attempted * np.isfinite(conf)
        c = np.nan_to_num(conf)
        y = a.correct
        put(f"{prefix}ece", lambda cols: _ece_stat(usable[:, cols], c[:, cols], y[:, cols], bins))
        put(f"{prefix}brier", mean_of(usable, (c - y) ** 2))
        put(f"{prefix}auroc", lambda cols: auroc_stat(usable[:, cols], c[:, cols], y[:, cols]))
        if full:
            clipped = np.clip(c, M.NLL_EPS, 1 - M.NLL_EPS)
            put(f"{prefix}nll", mean_of(usable, -(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))))
            put(f"{prefix}mce", lambda cols: _ece_stat(usable[:, cols], c[:, cols], y[:, cols], bins, worst=True))
            out[f"{prefix}ece_mass"] = _point(a, usable, c, lambda cc, yy: M.ece(cc, yy, bins, "mass"))
            out[f"{prefix}aurc"] = _point(a, usable, c, M.accuracy_coverage_area)

    calibration("", a.conf, full=True)
    calibration("cand_", a.cand, full=False)
    calibration("stated_", a.stated, full=False)

    # Temperature scaling, fitted per seed on the calibration split.
    temps = np.ones(a.S)
    if calibration_frames is not None:
        cal = _Arrays(align(calibration_frames))
        for s in range(a.S):
            att = cal.attempted[s] > 0
            temps[s] = M.fit_temperature(cal.conf[s, att], cal.correct[s, att])
    scaled = np.stack([M.apply_temperature(a.conf[s], temps[s]) for s in range(a.S)])
    put("ece_ts", lambda cols: _ece_stat(a.attempted[:, cols], scaled[:, cols], a.correct[:, cols], bins))
    out["temperature"] = float(np.mean(temps))

    # Behavioural calibration: answering vs the model's own confidence in its best guess.
    g = a.guess_conf
    known = np.isfinite(g)
    for t in targets:
        below = known & (np.nan_to_num(g) < t)
        above = known & ~below
        tt = _fmt(t)
        put(f"audit_t{tt}_answer_rate_below", mean_of(below.astype(float), a.attempted))
        put(f"audit_t{tt}_answer_rate_above", mean_of(above.astype(float), a.attempted))

    # Reference policies: what this model's own best guesses score with no training at all.
    right = a.guess_correct > 0
    for prefix, conf in (("ref_threshold", a.guess_seq), ("ref_threshold_cand", g)):
        has = np.isfinite(conf).astype(float)
        for t in targets:
            put(f"{prefix}_t{_fmt(t)}", mean_of(has, M.threshold_policy(conf, right, t)))
    put("ref_oracle", mean_of(known.astype(float), M.oracle_policy(right)))

    # By mention-count bucket.
    names = np.array([bucket_of(m) for m in frames[0]["mentions"]])
    present = sorted(set(names), key=bucket_sort_key)
    for bucket in buckets if buckets is not None else present:
        sub = np.flatnonzero(names == bucket)
        if not len(sub):
            raise NextlabError(f"no evaluation questions in bucket {bucket!r}")
        out[f"{bucket}.n"] = float(len(sub))
        put(f"{bucket}.accuracy", mean_of(a.ones, a.correct), sub)
        put(f"{bucket}.hallucination", mean_of(a.ones, a.wrong), sub)
        put(f"{bucket}.abstention", mean_of(a.ones, a.abstain), sub)
        put(f"{bucket}.accuracy_when_attempted", mean_of(a.attempted, a.correct), sub)
        put(f"{bucket}.best_guess_accuracy", mean_of(a.ones, a.guess_correct), sub)
    out["singleton_rate"] = math.nan if singleton_rate is None else float(singleton_rate)
    return json_safe(out)


REFERENCES = {"threshold": "guess_seq_confidence", "threshold_cand": "guess_confidence"}


def reference_share(
    frames: Sequence[pd.DataFrame], start_frame: pd.DataFrame, t: float, n_boot: int, seed: int,
) -> dict[str, float | None]:
    """A trained scheme's score at its own target t against the threshold policies of the model it
    started from (no training; `metrics.threshold_policy`), on the same evaluation questions.

    `share_<ref>` = score / reference score, per seed, averaged over seeds (undefined, NaN, where
    the reference scores <= 0: a share of nothing says nothing); `gap_<ref>` = score - reference.
    Intervals: the bootstrap over questions (one draw for both models) and the trained seeds.

    >>> import pandas as pd
    >>> start = pd.DataFrame({"question_id": [1, 2, 3, 4], "guess_correct": [True, True, False, False],
    ...                       "guess_confidence": [0.9, 0.8, 0.7, 0.1], "guess_seq_confidence": [0.9, 0.4, 0.7, 0.1]})
    >>> trained = pd.DataFrame({"question_id": [1, 2, 3, 4], "grade": ["correct", "abstain", "abstain", "abstain"]})
    >>> r = reference_share([trained], start, 0.5, 0, 0)      # cand: (1 + 1 - 1) / 4; seq: (1 - 1) / 4
    >>> r["share_threshold_cand"], r["gap_threshold_cand"], r["share_threshold"], r["gap_threshold"]
    (1.0, 0.0, None, 0.25)
    """
    frames = align(frames)
    start = align([start_frame])[0]
    if start["question_id"].tolist() != frames[0]["question_id"].tolist():
        raise NextlabError("a trained scheme and its starting model answered different questions")
    grades = _stack(frames, "grade", object)
    mine = (grades == "correct") - M.wrong_penalty(t) * (grades == "wrong")
    ones = np.ones(mine.shape)
    right = start["guess_correct"].to_numpy(bool)
    out: dict[str, float] = {}
    for name, column in REFERENCES.items():
        conf = start[column].to_numpy(float)
        has = np.isfinite(conf)[None, :].astype(float)
        ref = M.threshold_policy(conf, right, t)[None, :]

        def share(C: np.ndarray, ref=ref, has=has) -> np.ndarray:
            base = weighted_mean(C, has, ref)  # (R, 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(base > 0, weighted_mean(C, ones, mine) / np.where(base > 0, base, 1.0), math.nan)

        def gap(C: np.ndarray, ref=ref, has=has) -> np.ndarray:
            return weighted_mean(C, ones, mine) - weighted_mean(C, has, ref)

        for key, stat in ((f"share_{name}", share), (f"gap_{name}", gap)):
            out[key], out[f"{key}_lo"], out[f"{key}_hi"] = interval(stat, len(frames), len(start), n_boot, seed)
    return json_safe(out)


def headline_keys(targets: Sequence[float]) -> list[str]:
    """The keys figures and the compare view lead with."""
    return ["accuracy", "hallucination", "abstention", "accuracy_when_attempted",
            *[f"score_t{_fmt(t)}" for t in targets], "ece", "ece_ts", "brier", "auroc"]


# ---- the summary stage --------------------------------------------------------------------------

# The figures the summary draws into figures/<name>.png, in the order `figures.draw_all` draws them.
FIGURES = ("reliability", "hallucination_vs_abstention", "score_matrix", "accuracy_by_mentions")

@dataclass(frozen=True)
class Inputs:
    """The files the summary reads."""

    answers: list[Path]  # the evaluate jobs' answers.parquet, every scheme and seed
    data: Path  # the data stage's folder: its stats.json (the singleton rate)


def run(study: Any, inputs: Inputs, out: str | Path) -> dict[str, Any]:
    """Write metrics.json, summary.parquet, answers.parquet (every row) and figures/*.png into
    `out`; return the metrics."""
    from nextlab.evaluate.figures import draw_all  # matplotlib, and tables imports this module
    from nextlab.evaluate.tables import read_answers, summarize

    start = time.perf_counter()
    out = Path(out)
    stats = read_json(Path(inputs.data) / "stats.json")
    answers = read_answers(inputs.answers)
    flat, table = summarize(study, answers, stats.get("singleton_rate"))
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "answers.parquet") as tmp:
        answers.to_parquet(tmp, index=False)
    with atomic_path(out / "summary.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    draw_all(answers, table, out / "figures", study.evaluate.targets, study.evaluate.bins)
    write_json(out / "metrics.json", flat)
    write_json(out / "timing.json", {"seconds": time.perf_counter() - start})
    return flat
