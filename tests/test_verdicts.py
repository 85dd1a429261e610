"""The verdict rule: a difference is supported only when both values are non-degenerate and their
95% intervals separate; degenerate inputs give "not resolved" with the reason. Unit cases, then
the report's verdicts on the smoke study's own tables (made degenerate on purpose)."""

from __future__ import annotations

import math
import shutil

import pandas as pd
import pytest

from nextlab.report.stats import Finding, compare, degenerate, proportion

SMOKE = "params/smoke.yaml"


def test_separated_intervals_resolve_in_either_order():
    hi, lo = Finding("a", "high", 0.8, 0.7, 0.9), Finding("b", "low", 0.2, 0.1, 0.3)
    assert compare(hi, lo).resolved and compare(hi, lo).higher is hi
    assert compare(lo, hi).resolved and compare(lo, hi).higher is hi
    assert hi.above(lo) and not lo.above(hi)


@pytest.mark.parametrize("bad, why", [
    (Finding("a", "zero width", 0.0, 0.0, 0.0), "zero-width interval"),
    (Finding("a", "zero width", 0.4, 0.4, 0.4), "zero-width interval"),
    (Finding("a", "rounding width", 3.7e-14, 3.69e-14, 3.74e-14), "zero-width interval"),
    (Finding("a", "empty bucket", math.nan), "no value"),
    (Finding("a", "no interval", 0.3), "no interval"),
    (Finding("a", "n = 0", 0.3, 0.1, 0.5, n=0), "empty"),
    (None, "not measured"),
])
def test_degenerate_inputs_are_not_resolved(bad, why):
    far = Finding("b", "far away", 5.0, 4.0, 6.0)
    for a, b in ((bad, far), (far, bad)):
        c = compare(a, b)
        assert not c.resolved and c.higher is None
        assert why in c.reason
    assert degenerate(bad) is not None and why in degenerate(bad)
    if bad is not None:
        assert not far.above(bad) and not bad.above(far)


def test_all_zero_values_and_overlap_are_not_resolved():
    c = compare(Finding("a", "x", 0.0, -0.01, 0.02), Finding("b", "y", 0.0, -0.02, 0.01))
    assert not c.resolved and "all-zero values" in c.reason
    c = compare(Finding("a", "x", 0.5, 0.3, 0.6), Finding("b", "y", 0.4, 0.2, 0.55))
    assert not c.resolved and "overlap" in c.reason


def test_wilson_intervals_at_zero_are_not_degenerate():
    """0 of 40 right still has an interval (Wilson: [0, 0.088]): a real measurement."""
    none_right = proportion("k", "0 of 40", 0, 40)
    assert degenerate(none_right) is None
    assert compare(proportion("h", "36 of 40", 36, 40), none_right).resolved


# ---- on the smoke study ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def study(smoke_project):
    from nextlab.config import load_study

    return load_study(smoke_project["path"] / SMOKE)


def _draw(results, study, stem):
    from nextlab.report.registry import load_figures, plan
    from nextlab.report.tables import Tables

    load_figures()
    inst = next(i for i in plan(study) if i.stem == stem)
    return inst.figure.make(Tables(results, SMOKE, study), **inst.labels)


@pytest.mark.e2e
def test_supported_verdicts_of_the_smoke_study_rest_on_real_intervals(smoke_project, study):
    """Every 'Supported' the smoke report states compares findings with a finite, non-zero-width
    interval; where a compared value is degenerate the verdict says 'Not resolved' and why."""
    from nextlab.report.registry import load_figures, plan
    from nextlab.report.tables import Tables

    load_figures()
    tables = Tables(smoke_project["path"] / "results" / "smoke", SMOKE, study)
    seen = 0
    for inst in plan(study):
        if inst.figure.name not in ("evaluate-reliability", "evaluate-hallucination", "evaluate-mentions",
                                    "pretrain-facts"):
            continue
        drawn = inst.figure.make(tables, **inst.labels)
        if drawn.verdict is None:
            continue
        seen += 1
        if drawn.verdict.startswith("Supported"):
            assert sum(degenerate(f) is None for f in drawn.findings) >= 2, (inst.stem, drawn.verdict)
        else:
            assert drawn.verdict.startswith(("Not resolved", "Not shown")), drawn.verdict
    assert seen >= 3


@pytest.mark.e2e
def test_zero_width_eces_of_the_smoke_study_are_not_resolved(smoke_project, study, tmp_path):
    """The issue's case: two ECEs of 0.000 with zero-width intervals must not read 'Supported'
    (as drawn from the smoke study's own tables, then with the ECEs set to exactly 0)."""
    drawn = _draw(smoke_project["path"] / "results" / "smoke", study, f"evaluate-reliability-{next(iter(study.models))}")
    assert not drawn.verdict.startswith("Supported") or all(
        f.hi - f.lo > 1e-9 for f in drawn.findings if math.isfinite(f.lo)), drawn.verdict
    results = tmp_path / "results" / "smoke"
    shutil.copytree(smoke_project["path"] / "results" / "smoke", results, ignore=shutil.ignore_patterns("*.pt"))
    model = next(iter(study.models))
    path = results / "evaluate" / model / "summary" / "summary.parquet"
    summary = pd.read_parquet(path)
    ece = summary["metric"].isin(["ece", "stated_ece"])
    summary.loc[ece, ["value", "lo", "hi"]] = 0.0
    summary.to_parquet(path, index=False)
    drawn = _draw(results, study, f"evaluate-reliability-{model}")
    assert drawn.verdict.startswith("Not resolved"), drawn.verdict
    assert "zero-width interval" in drawn.verdict
    # An empty bucket (no value) in the mention-count verdict: not resolved, and it says so.
    summary = pd.read_parquet(path)
    low = sorted({m.split(".")[0] for m in summary["metric"] if m.startswith("k") and "." in m},
                 key=lambda b: int(b[1:]))[0]
    summary.loc[summary["metric"] == f"{low}.accuracy", ["value", "lo", "hi"]] = math.nan
    summary.to_parquet(path, index=False)
    drawn = _draw(results, study, f"evaluate-mentions-{model}")
    assert drawn.verdict.startswith("Not resolved"), drawn.verdict
