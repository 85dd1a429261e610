"""The evaluation's tables across jobs: the answers every model wrote, and their summary.

Torch-free on purpose: the summary job and the report read these tables with no model present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from nextlab.config import Study
from nextlab.config.posttrain import parse_scheme
from nextlab.errors import InputFileError, NextlabError
from nextlab.evaluate.summary import bucket_of, bucket_sort_key, reference_share, scheme_metrics

ANSWER_COLUMNS = [
    "question_id", "person_id", "attribute", "mentions", "bucket", "split", "seen", "gold", "answer", "grade",
    "confidence", "cand_confidence", "guess", "guess_confidence", "guess_seq_confidence",
    "guess_correct", "p_idk", "stated_confidence",
    "finished", "answer_tokens", "model", "scheme", "seed",
]


def expected_buckets(study: Study) -> list[str]:
    """Every mention count of the params' mix, and never-seen names when there are any."""
    names = [bucket_of(k) for k in study.data.mention_mix]
    if study.data.n_unseen > 0:
        names.append(bucket_of(0))
    return sorted(names, key=bucket_sort_key)


def check_buckets(eval_rows: pd.DataFrame, buckets: list[str], path: str | Path) -> None:
    present = {bucket_of(m) for m in eval_rows["mentions"]}
    missing = [b for b in buckets if b not in present]
    if missing:
        raise InputFileError(
            f"{path}: the evaluation split has no questions in bucket(s) {missing} "
            f"(expected {buckets}); raise data.n_people / data.n_unseen or that mention fraction"
        )


def read_answers(paths: list[str | Path]) -> pd.DataFrame:
    """Concatenate answers.parquet files; a missing or foreign one is an error naming it."""
    frames = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise InputFileError(f"{path}: answers table not found")
        frame = pd.read_parquet(path)
        missing = [c for c in ANSWER_COLUMNS if c not in frame.columns]
        if missing:
            raise InputFileError(f"{path}: lacks column(s) {missing}; not an evaluate answers table")
        frames.append(frame)
    if not frames:
        raise NextlabError("no answers tables given")
    return pd.concat(frames, ignore_index=True)


def own_target(scheme_name: str) -> float | None:
    """The target t a scheme trains for, where it starts from the SFT model (`none`): binary is
    t = 0 (a wrong answer costs nothing), penalized-<t> its t. None for the others (`calibrated`
    starts from its own confidence SFT and has no target; `none` is the start itself).

    >>> own_target("binary"), own_target("penalized-0.75"), own_target("calibrated")
    (0.0, 0.75, None)
    """
    try:
        scheme = parse_scheme(scheme_name)
    except ValueError:
        return None
    return 0.0 if scheme.kind == "binary" else scheme.t


def summarize(study: Study, answers: pd.DataFrame, singleton_rate: float | None) -> tuple[dict[str, Any], pd.DataFrame]:
    """Across seeds, per (model, scheme): flat metrics `<model>/<scheme>/<key>` and a long table
    (model, scheme, metric, value, lo, hi, n_seeds) the figures and the report read; for each
    scheme trained from the SFT model also `share_*` and `gap_*` (`summary.reference_share`)."""
    p = study.evaluate
    buckets = expected_buckets(study)
    flat: dict[str, Any] = {}
    rows = []
    for (model, scheme), group in answers.groupby(["model", "scheme"], sort=False):
        seeds = sorted(group["seed"].unique())
        ev = [group[(group["seed"] == s) & (group["split"] == "eval")] for s in seeds]
        cal = [group[(group["seed"] == s) & (group["split"] == "calibration")] for s in seeds]
        m = scheme_metrics(ev, cal, p.targets, p.bins, p.bootstrap_samples, study.seed, singleton_rate, buckets)
        for key, value in m.items():
            flat[f"{model}/{scheme}/{key}"] = value
        for key, value in m.items():
            if key.endswith(("_lo", "_hi")):
                continue
            rows.append({"model": model, "scheme": scheme, "metric": key, "value": value,
                         "lo": m.get(f"{key}_lo"), "hi": m.get(f"{key}_hi"), "n_seeds": len(seeds)})
    # Each trained scheme at its own t against the threshold policies of the SFT model it started from.
    for (model, scheme), group in answers[answers["split"] == "eval"].groupby(["model", "scheme"], sort=False):
        t = own_target(scheme)
        start = answers[(answers["model"] == model) & (answers["scheme"] == "none") & (answers["split"] == "eval")]
        if t is None or start.empty:
            continue
        seeds = sorted(group["seed"].unique())
        m = reference_share([group[group["seed"] == s] for s in seeds], start[start["seed"] == start["seed"].min()],
                            t, p.bootstrap_samples, study.seed)
        for key, value in m.items():
            flat[f"{model}/{scheme}/{key}"] = value
            if not key.endswith(("_lo", "_hi")):
                rows.append({"model": model, "scheme": scheme, "metric": key, "value": value,
                             "lo": m.get(f"{key}_lo"), "hi": m.get(f"{key}_hi"), "n_seeds": len(seeds)})
    table = pd.DataFrame(rows, columns=["model", "scheme", "metric", "value", "lo", "hi", "n_seeds"])
    return flat, table.astype({"value": float, "lo": float, "hi": float})
