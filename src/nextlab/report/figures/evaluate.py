"""Figures of the evaluation, drawn by the evaluate stage's own functions
(`nextlab.evaluate.figures`) from its summary tables; this module adds the findings.

Inputs, per model, from `nextlab evaluate --summary`: `summary.parquet` (model, scheme, metric,
value, lo, hi, n_seeds: each metric's mean over seeds with its 95% bootstrap interval over
questions and seeds) and `answers.parquet` (every graded answer of every scheme and seed).
"""

from __future__ import annotations

import math

from nextlab import layout
from nextlab.report.registry import Drawn, Need, figure
from nextlab.report.stats import Finding, compare

SUMMARY = layout.EVALUATE_SUMMARY_TABLE
SUMMARY_COLUMNS = ("model", "scheme", "metric", "value", "lo", "hi")
ANSWERS = layout.EVALUATE_SUMMARY_ANSWERS
ANSWER_COLUMNS = ("scheme", "seed", "split", "grade", "confidence")


def _summary(tables, model: str):
    return tables.parquet(SUMMARY.format(model=model), SUMMARY_COLUMNS)


def _schemes(summary) -> list[str]:
    from nextlab.evaluate.figures import scheme_order

    return scheme_order(summary["scheme"].unique())


def _finding(summary, model: str, scheme: str, metric: str, label: str) -> Finding | None:
    row = summary[(summary["scheme"] == scheme) & (summary["metric"] == metric)]
    if row.empty or not math.isfinite(float(row.iloc[0]["value"])):
        return None
    r = row.iloc[0]
    lo = float(r["lo"]) if r["lo"] is not None and math.isfinite(float(r["lo"])) else math.nan
    hi = float(r["hi"]) if r["hi"] is not None and math.isfinite(float(r["hi"])) else math.nan
    seeds = f", {int(r['n_seeds'])} seed{'s' if int(r['n_seeds']) != 1 else ''}" if "n_seeds" in r else ""
    return Finding(f"evaluate.{model}.{scheme}.{metric}", f"{label}, {scheme}{seeds}", float(r["value"]), lo, hi)


def _wide(summary, metrics: list[str]):
    """One row per scheme (in scheme order), `<metric>`, `<metric>_lo`, `<metric>_hi` columns: the
    flat table DVC plots read. Dots in metric names become underscores."""
    import pandas as pd

    rows = []
    for scheme in _schemes(summary):
        row: dict[str, object] = {"scheme": scheme}
        for metric in metrics:
            hit = summary[(summary["scheme"] == scheme) & (summary["metric"] == metric)]
            name = metric.replace(".", "_")
            for suffix, column in (("", "value"), ("_lo", "lo"), ("_hi", "hi")):
                row[name + suffix] = float(hit.iloc[0][column]) if len(hit) and hit.iloc[0][column] is not None else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _compare(base_scheme: str, base: Finding | None, others: dict[str, Finding | None], what: str) -> str | None:
    """One sentence: is some scheme's value lower than the base scheme's, resolved by `compare`
    (both non-degenerate, intervals apart)? If none is, why not, scheme by scheme."""
    if base is None or not others:
        return None
    verdicts = {s: compare(base, f) for s, f in others.items()}
    lower = {s: others[s] for s, c in verdicts.items() if c.resolved and c.higher is base}
    if lower:
        scheme, best = min(lower.items(), key=lambda item: item[1].value)
        return (f"Supported: {what} is {best.value:.3f} under {scheme} against {base.value:.3f} under "
                f"{base_scheme} (95% intervals do not overlap).")
    reasons = "; ".join(f"{s}: {c.reason}" for s, c in verdicts.items())
    return f"Not resolved at this scale: no scheme's {what} is resolved below {base_scheme}'s ({reasons})."


@figure(
    "evaluate-hallucination",
    stage="evaluate",
    claim="incentives",
    per=("model",),
    title="Hallucination against abstention by reward scheme",
    caption="Each reward scheme's share of held-out questions answered wrongly (hallucination, wrong / "
    "all) against its share of 'I don't know' answers, on all evaluation questions and on never-seen "
    "names alone; mean over seeds with 95% bootstrap intervals over questions and seeds.",
    needs=[Need(SUMMARY, SUMMARY_COLUMNS)],
)
def hallucination(tables, model: str) -> Drawn:
    from nextlab.evaluate.figures import hallucination_vs_abstention

    summary = _summary(tables, model)
    schemes = _schemes(summary)
    findings = [f for s in schemes for f in (
        _finding(summary, model, s, "hallucination", "hallucination rate"),
        _finding(summary, model, s, "abstention", "abstention rate"),
        _finding(summary, model, s, "unseen.hallucination", "hallucination on never-seen names"),
    ) if f is not None]
    base_name = "binary" if "binary" in schemes else "none"
    base = _finding(summary, model, base_name, "hallucination", "hallucination rate")
    others = {s: f for s in schemes if s not in (base_name, "none")
              for f in [_finding(summary, model, s, "hallucination", "hallucination rate")] if f is not None}
    verdict = _compare(base_name, base, others, "the hallucination rate")
    data = _wide(summary, ["hallucination", "abstention", "accuracy", "unseen.hallucination", "unseen.abstention"])
    return Drawn(lambda path: hallucination_vs_abstention(summary, path), data=data, findings=findings,
                 verdict=verdict)


@figure(
    "evaluate-scores",
    stage="evaluate",
    claim="incentives",
    per=("model",),
    title="Score by trained-on scheme and graded-by target",
    caption="Mean score on held-out questions when grading with confidence target t (correct 1, wrong "
    "-t/(1-t), abstain 0), for models trained under each scheme; 95% intervals in brackets. A model "
    "should score best under the target it was trained for.",
    needs=[Need(SUMMARY, SUMMARY_COLUMNS)],
)
def scores(tables, model: str) -> Drawn:
    import pandas as pd

    from nextlab.evaluate.figures import score_matrix, score_rows
    from nextlab.evaluate.tables import own_target

    summary = _summary(tables, model)
    targets = tables.study.evaluate.targets
    schemes = _schemes(summary)
    findings = []
    for t in targets:
        if t == 0:
            continue
        metric = f"score_t{t:g}"
        at_t = {s: f for s in schemes for f in [_finding(summary, model, s, metric, f"score graded at t = {t:g}")] if f}
        if at_t:
            best = max(at_t, key=lambda s: at_t[s].value)
            findings.append(at_t[best])
            if best != "binary" and "binary" in at_t:
                findings.append(at_t["binary"])
        for ref, what in (("ref_threshold", "sequence"), ("ref_threshold_cand", "candidate")):
            f = _finding(summary, model, "none", f"{ref}_t{t:g}",
                         f"threshold policy on the SFT model's {what} probability, graded at t = {t:g}")
            if f:
                findings.append(f)
    oracle = _finding(summary, model, "none", "ref_oracle", "knowledge oracle of the SFT model (any t)")
    if oracle:
        findings.append(oracle)
    # Each trained scheme at its own t against the SFT model's threshold policy (no training).
    reached, short = [], []
    for scheme in schemes:
        t = own_target(scheme)
        if t is None:
            continue
        for ref, what in (("threshold_cand", "candidate"), ("threshold", "sequence")):
            f = _finding(summary, model, scheme, f"share_{ref}",
                         f"score at t = {t:g} as a share of the SFT threshold policy ({what} probability)")
            if f:
                findings.append(f)
        gap = _finding(summary, model, scheme, "gap_threshold_cand",
                       f"score at t = {t:g} minus the SFT threshold policy's (candidate probability)")
        if gap is None:
            continue
        findings.append(gap)
        where = f"{scheme} ({gap.value:+.3f} [{gap.lo:+.3f}, {gap.hi:+.3f}])"
        # Short: the gap's interval lies wholly below 0; otherwise the data do not put it below.
        (reached if not gap.hi < 0 else short).append(where)
    note = ("For each grading target, the best-scoring scheme (and binary), the SFT model's reference policies "
            "(no training), and each trained scheme against the SFT threshold policy at its own t:")
    verdict = None
    if reached or short:
        verdict = ("Trained schemes at their own t against thresholding the SFT model's candidate probability "
                   "(score minus reference, 95% interval): "
                   + (f"not resolved below it: {', '.join(reached)}" if reached else "every one is below it")
                   + (f"; below it: {', '.join(short)}." if short else "."))
    rows = score_rows(summary, targets)
    data = pd.DataFrame([{"row": label, "kind": kind,
                          **{f"score_t{t:g}{suffix}": cell[k] for t, cell in zip(targets, cells)
                             for k, suffix in enumerate(("", "_lo", "_hi"))}} for kind, label, cells in rows])
    return Drawn(lambda path: score_matrix(summary, path, targets), data=data, findings=findings,
                 verdict=verdict, note=note)


@figure(
    "evaluate-reliability",
    stage="evaluate",
    claim="calibration",
    per=("model",),
    title="Reliability of confidence by reward scheme",
    caption="Attempted answers to held-out questions binned by the model's confidence (the probability "
    "of its answer's tokens, seeds pooled); bar height is the share right in the bin, the number "
    "above it the answers it holds. Perfect calibration lies on the diagonal.",
    needs=[Need(ANSWERS, ANSWER_COLUMNS), Need(SUMMARY, SUMMARY_COLUMNS)],
)
def reliability(tables, model: str) -> Drawn:
    from nextlab.evaluate.figures import reliability as draw

    answers = tables.parquet(ANSWERS.format(model=model), ANSWER_COLUMNS)
    summary = _summary(tables, model)
    bins = tables.study.evaluate.bins
    schemes = _schemes(summary)
    ece = {s: f for s in schemes for f in [_finding(summary, model, s, "ece", "ECE of answer probability")] if f}
    stated = _finding(summary, model, "calibrated", "stated_ece", "ECE of stated confidence")
    findings = list(ece.values()) + ([stated] if stated is not None else [])
    base_name = "binary" if "binary" in schemes else "none"
    others = {s: f for s, f in ece.items() if s != base_name}
    if stated is not None:
        others["calibrated (stated confidence)"] = stated
    verdict = _compare(base_name, ece.get(base_name), others, "expected calibration error")
    data = reliability_table(answers, bins)
    return Drawn(lambda path: draw(answers, path, bins), data=data, findings=findings, verdict=verdict)


def reliability_table(answers, bins: int):
    """The reliability diagram's points: per scheme and non-empty confidence bin, the mean
    confidence, the share correct and the count (attempted evaluation answers, seeds pooled)."""
    import pandas as pd

    from nextlab.qa.metrics import reliability_bins

    rows = []
    attempted = answers[(answers["split"] == "eval") & (answers["grade"] != "abstain") & answers["confidence"].notna()]
    for scheme in _schemes(answers):
        sub = attempted[attempted["scheme"] == scheme]
        if not len(sub):
            continue
        counts, conf, acc = reliability_bins(sub["confidence"].to_numpy(float), (sub["grade"] == "correct").to_numpy(),
                                             bins, "width")
        rows += [{"scheme": scheme, "confidence": c, "accuracy": a, "answers": int(n)}
                 for n, c, a in zip(counts, conf, acc)]
    return pd.DataFrame(rows, columns=["scheme", "confidence", "accuracy", "answers"])


@figure(
    "evaluate-mentions",
    stage="evaluate",
    claim="frequency",
    per=("model",),
    title="Accuracy, hallucination and abstention by mention count",
    caption="Held-out questions cut by how often the fact's biography appeared in pretraining (k; "
    "'unseen': never-seen names), one line per reward scheme, mean over seeds with 95% intervals. "
    "The dotted mark on the hallucination panel is the singleton rate.",
    needs=[Need(SUMMARY, SUMMARY_COLUMNS)],
)
def mentions(tables, model: str) -> Drawn:
    from nextlab.evaluate.figures import by_mentions
    from nextlab.evaluate.summary import bucket_sort_key

    summary = _summary(tables, model)
    schemes = _schemes(summary)
    buckets = sorted({m.split(".", 1)[0] for m in summary["metric"] if "." in m and m.startswith("k")},
                     key=bucket_sort_key)
    scheme = "none" if "none" in schemes else schemes[0]
    findings: list[Finding] = []
    verdict = None
    if len(buckets) >= 2:
        low = _finding(summary, model, scheme, f"{buckets[0]}.accuracy", f"accuracy on facts seen {buckets[0][1:]}×")
        high = _finding(summary, model, scheme, f"{buckets[-1]}.accuracy", f"accuracy on facts seen {buckets[-1][1:]}×")
        findings = [f for f in (low, high) if f]
        c = compare(high, low)
        verdict = (f"Supported after post-training too ({scheme}): facts seen {buckets[-1][1:]}× are answered "
                   f"right more often than facts seen {buckets[0][1:]}× (95% intervals do not overlap)."
                   if c.resolved and c.higher is high else
                   f"Not resolved at this scale ({scheme}): {c.reason}.")
    k1 = _finding(summary, model, scheme, "k1.hallucination", "hallucination on facts seen once")
    if k1:
        findings.append(k1)
    data = summary[summary["metric"].str.contains(".", regex=False)]
    data = data.assign(bucket=data["metric"].str.split(".", n=1).str[0],
                       metric=data["metric"].str.split(".", n=1).str[1])[["scheme", "bucket", "metric", "value", "lo", "hi"]]
    return Drawn(lambda path: by_mentions(summary, path), data=data, findings=findings, verdict=verdict)
