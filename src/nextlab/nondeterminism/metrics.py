"""The job's flat metrics (metrics.json for DVC, MLflow), computed from its tables only.

Key families (`<m>` is a teacher-forced measure, `prefill` or `decode`; `<b>` a batch size > 1):

* `<m>_not_equal_share`, `<m>_flip_rate`, `<m>_max_abs_diff`, `<m>_mean_abs_diff`,
  `<m>_prompts_with_flip`: over every target x batch size x padding, default path;
  `<m>_not_equal_share_b<b>`, `<m>_flip_rate_b<b>`: per batch size;
* from drift to flips (`steps` table, default path): `<m>_predicted_flip_rate` (share of steps
  whose alone top-1/top-2 margin is below the step's max |logit change|), `<m>_possible_flip_rate`
  (margin below twice it: no flip can happen elsewhere), `<m>_flip_rate_upper` (one-sided 95%
  Clopper-Pearson bound of the observed flip rate), `<m>_predicted_changed_rate` (share of forced
  runs with a predicted step: completions the drift predicts to change) beside `<m>_prompts_with_flip`;
* `free_differ_rate`, `free_differ_rate_b<b>`, `free_differ_upper(_b<b>)` (the 95% upper bound,
  what a run where nothing changed still says), `free_completions_b<b>` and
  `free_power_b<b>` (the power to see a 1% rate of changed completions), `free_first_divergence_mean`,
  `free_differ_fp64_rate`, `alone_differ_fp64_rate`, `qa_grade_changed_rate`,
  `qa_grade_changed`: free-running completions against the same prompt alone (and float64);
* `prefill_vs_decode_not_equal_share`: alone, the cache's logits against one forward pass;
* `unique_completions_mean`, `unique_completions_max`, `repeat_requests`;
* controls, which must be 0 where the method is sound: `control_repeat_not_equal` (the same
  batches run twice, default path: steps or completions that differ), `control_invariant_*`
  (the batch-invariant mode: differing steps, flips, differing completions, its prefill vs
  decode, and `control_invariant_unique_max` which must be 1);
* `tokens_per_s_default_b<b>`, `tokens_per_s_invariant_b<b>`, `invariant_slowdown_b<b>`:
  free-running decoding speed (all rows' tokens / wall seconds), and their ratio.

A value that cannot be computed (e.g. no QA target) is None, so every job has the same keys.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from nextlab.nondeterminism.power import detection_power, predicted_flips, upper_bound

# The rate of changed completions the design must detect (with 95% power at each batch size).
DETECT_RATE = 0.01


def decoding_speed(timing: pd.DataFrame) -> pd.Series:
    """Free-running decoding speed of the first runs, all rows' tokens / wall seconds, indexed by
    (path, batch_size); the invariant mode's slowdown at b is speed["default", b] / speed["invariant", b]."""
    free = timing[(timing["measure"] == "free") & (timing["run"] == "first")] if len(timing) else timing
    sums = free.groupby(["path", "batch_size"])[["tokens", "seconds"]].sum()
    return (sums["tokens"] / sums["seconds"].where(sums["seconds"] > 0)).dropna()


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _logit_stats(rows: pd.DataFrame) -> dict[str, float | None]:
    steps = rows["steps"].sum()
    return {
        "not_equal_share": _ratio(rows["steps_not_equal"].sum(), steps),
        "flip_rate": _ratio(rows["flips"].sum(), steps),
        "max_abs_diff": float(rows["max_abs_diff"].max()) if len(rows) else None,
        "mean_abs_diff": _ratio((rows["mean_abs_diff"] * rows["steps"]).sum(), steps),
        "prompts_with_flip": float((rows["flips"] > 0).mean()) if len(rows) else None,
    }


def _upper(k: int, n: int) -> float | None:
    return upper_bound(int(k), int(n)) if n else None


def _drift(steps: pd.DataFrame | None, m: str) -> dict[str, float | None]:
    rows = steps[steps["measure"] == m] if steps is not None and len(steps) else None
    if rows is None or not len(rows):
        return {"predicted_flip_rate": None, "possible_flip_rate": None, "predicted_changed_rate": None}
    p = predicted_flips(rows["margin"].to_numpy(), rows["max_abs_diff"].to_numpy())
    runs = rows.assign(predicted=rows["margin"] < rows["max_abs_diff"]).groupby(
        ["batch_size", "padding", "prompt_id"])["predicted"].any()
    return {"predicted_flip_rate": p.predicted_rate, "possible_flip_rate": p.possible_rate,
            "predicted_changed_rate": float(runs.mean())}


def job_metrics(logits: pd.DataFrame, completions: pd.DataFrame, timing: pd.DataFrame, unique: pd.DataFrame,
                batch_sizes: list[int], cache_modes: list[str], steps: pd.DataFrame | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sizes = [b for b in batch_sizes if b > 1]
    first = logits[(logits["run"] == "first") & (logits["batch_size"] > 1)] if len(logits) else logits
    for m in cache_modes:
        rows = first[(first["path"] == "default") & (first["measure"] == m)] if len(first) else first
        for key, value in _logit_stats(rows).items():
            out[f"{m}_{key}"] = value
        out[f"{m}_flip_rate_upper"] = _upper(rows["flips"].sum(), rows["steps"].sum()) if len(rows) else None
        for key, value in _drift(steps, m).items():
            out[f"{m}_{key}"] = value
        for b in sizes:
            at = rows[rows["batch_size"] == b] if len(rows) else rows
            stats = _logit_stats(at)
            out[f"{m}_not_equal_share_b{b}"] = stats["not_equal_share"]
            out[f"{m}_flip_rate_b{b}"] = stats["flip_rate"]

    comp = completions[completions["run"] == "first"] if len(completions) else completions
    default = comp[comp["path"] == "default"] if len(comp) else comp
    batched = default[default["batch_size"] > 1] if len(default) else default
    alone = default[default["batch_size"] == 1] if len(default) else default
    out["free_differ_rate"] = float(batched["differs"].mean()) if len(batched) else None
    for b in sizes:
        at = batched[batched["batch_size"] == b] if len(batched) else batched
        out[f"free_differ_rate_b{b}"] = float(at["differs"].mean()) if len(at) else None
        out[f"free_differ_upper_b{b}"] = _upper(at["differs"].sum(), len(at)) if len(at) else None
        out[f"free_completions_b{b}"] = int(len(at))
        out[f"free_power_b{b}"] = detection_power(DETECT_RATE, len(at))
    out["free_differ_upper"] = _upper(batched["differs"].sum(), len(batched)) if len(batched) else None
    diverged = batched[batched["differs"]] if len(batched) else batched
    out["free_first_divergence_mean"] = float(diverged["first_divergence"].mean()) if len(diverged) else None
    out["free_differ_fp64_rate"] = _mean_of(batched, "differs_fp64")
    out["alone_differ_fp64_rate"] = _mean_of(alone, "differs_fp64")
    qa = batched[batched["kind"] == "qa"] if len(batched) else batched
    out["qa_grade_changed_rate"] = _mean_of(qa, "grade_changed")
    out["qa_grade_changed"] = int(qa["grade_changed"].fillna(False).astype(bool).sum()) if len(qa) else 0

    pvd = logits[(logits["measure"] == "prefill_vs_decode")] if len(logits) else logits
    for path, key in (("default", "prefill_vs_decode_not_equal_share"),
                      ("invariant", "control_invariant_prefill_vs_decode_not_equal")):
        rows = pvd[pvd["path"] == path] if len(pvd) else pvd
        out[key] = (_ratio(rows["steps_not_equal"].sum(), rows["steps"].sum()) if path == "default"
                    else (int(rows["steps_not_equal"].sum()) if len(rows) else None))

    default_unique = unique[unique["path"] == "default"] if len(unique) else unique
    out["unique_completions_mean"] = float(default_unique["unique"].mean()) if len(default_unique) else None
    out["unique_completions_max"] = int(default_unique["unique"].max()) if len(default_unique) else None
    out["repeat_requests"] = int(default_unique["requests"].sum()) if len(default_unique) else 0

    control = logits[logits["run"] == "control"] if len(logits) else logits
    out["control_repeat_not_equal"] = int(control["steps_not_equal"].sum()) if len(control) else None
    inv_logits = first[first["path"] == "invariant"] if len(first) else first
    inv_comp = comp[(comp["path"] == "invariant") & (comp["batch_size"] > 1)] if len(comp) else comp
    has_inv = bool(len(inv_logits) or len(inv_comp))
    out["control_invariant_not_equal"] = int(inv_logits["steps_not_equal"].sum()) if has_inv else None
    out["control_invariant_flips"] = int(inv_logits["flips"].sum()) if has_inv else None
    out["control_invariant_differ"] = int(inv_comp["differs"].sum()) if has_inv else None
    inv_unique = unique[unique["path"] == "invariant"] if len(unique) else unique
    out["control_invariant_unique_max"] = int(inv_unique["unique"].max()) if len(inv_unique) else None

    measured = decoding_speed(timing)
    for b in sizes:
        speed = {}
        for path in ("default", "invariant"):
            speed[path] = float(measured[path, b]) if (path, b) in measured.index else None
            out[f"tokens_per_s_{path}_b{b}"] = speed[path]
        both = speed["default"] and speed["invariant"]
        out[f"invariant_slowdown_b{b}"] = speed["default"] / speed["invariant"] if both else None
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def _mean_of(rows: pd.DataFrame, column: str) -> float | None:
    values = rows[column].dropna() if len(rows) else []
    return float(values.astype(bool).mean()) if len(values) else None
