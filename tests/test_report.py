"""The report: figures and documents from the smoke study's tables alone, the Snakemake report,
bad input (no results, a missing column) and `dvc metrics diff` between two runs' params."""

from __future__ import annotations

import json
import shutil
import time

import pandas as pd
import pytest

from conftest import run

SMOKE = "params/smoke.yaml"


@pytest.fixture(scope="module")
def project(smoke_project):
    return smoke_project


@pytest.fixture(scope="module")
def study(project):
    from nextlab.config import load_study

    return load_study(project["path"] / SMOKE)


def planned(study):
    from nextlab.report.registry import plan

    return plan(study)


def test_plan_follows_the_params(root):
    """One figure file per model / scheme / seed the params name; post-training figures only for
    schemes that post-train; every name unique; the inputs are the stages' documented files."""
    from nextlab.config import load_study
    from nextlab.report.registry import needed_paths, plan

    for params in ("smoke", "default"):
        study = load_study(root / "params" / f"{params}.yaml")
        figures = plan(study)
        stems = [i.stem for i in figures]
        assert len(stems) == len(set(stems))
        trained = [s for s in study.posttrain.schemes if s != "none"]
        steps = [i for i in figures if i.figure.name == "posttrain-steps"]
        assert len(steps) == len(study.models) * len(trained) * len(study.posttrain.seeds)
        model = next(iter(study.models))
        paths = {p for i in figures for p, _ in needed_paths(i, study)}
        assert f"models/{model}/pretrain/curve.csv" in paths
        assert f"evaluate/{model}/summary/summary.parquet" in paths
    assert [i.stem for i in plan(study, stages=["data"])] == ["data-mentions"]


def test_wilson_interval_and_documents():
    from nextlab.report.document import to_html, to_markdown
    from nextlab.report.stats import proportion, wilson

    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    lo, hi = wilson(7, 20)
    assert lo < 0.35 < hi and hi - lo == pytest.approx(0.386, abs=0.01)
    finding = proportion("k", "accuracy", 7, 20)
    assert finding.text() == "accuracy: 0.350 (95% CI 0.181–0.567, n = 20)"
    blocks = [("h1", "Report"), ("p", "a `code` < b"), ("table", ["a", "b"], [["1", "x|y"]])]
    assert "| 1 | x\\|y |" in to_markdown(blocks)
    html = to_html(blocks, "t")
    assert "<code>code</code> &lt; b" in html and html.startswith("<!DOCTYPE html>")


@pytest.mark.e2e
def test_report_rule_wrote_every_figure(project, study):
    reports = project["path"] / "reports" / "smoke"
    markdown = (reports / "report.md").read_text()
    html = (reports / "report.html").read_text()
    for inst in planned(study):
        png = reports / "figures" / inst.filename
        assert png.stat().st_size > 1000, png
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"figures/{inst.filename}" in markdown, f"report.md does not show {inst.filename}"
        assert f'id="{inst.stem}"' in html, f"report.html does not show {inst.stem}"
    # Self-contained: every image inlined, nothing fetched.
    assert "data:image/png;base64," in html
    assert 'src="http' not in html and "src='http" not in html and 'src="figures/' not in html
    findings = json.loads((project["path"] / "reports/smoke/findings.json").read_text())
    assert findings["report.figures"] == len(planned(study))
    assert findings["data.singleton_rate"] == pytest.approx(0.4)


@pytest.mark.e2e
def test_report_builds_from_tables_with_no_model(project, tmp_path):
    """Delete every checkpoint, then rebuild: every figure is drawn, in seconds."""
    results = tmp_path / "results" / "smoke"
    shutil.copytree(project["path"] / "results" / "smoke", results)
    for ckpt in results.rglob("*.pt"):
        ckpt.unlink()
    assert not list(results.rglob("*.pt"))
    out = tmp_path / "reports"
    start = time.perf_counter()
    # Its own tracking store: a report run by hand has no pipeline parent, and the shared project's
    # runs must stay as the study left them for the tests that read them (tests/test_pipeline.py).
    env = {**project["env"], "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    proc = run(["nextlab", "report", "--params", SMOKE, "--results", str(results), "--out", str(out),
                "--data-out", str(tmp_path / "data")], project["path"], env)
    seconds = time.perf_counter() - start
    findings = json.loads((tmp_path / "data" / "findings.json").read_text())
    assert findings["report.figures_drawn"] == findings["report.figures"], proc.stderr
    for png in (out / "figures").glob("*.png"):
        assert png.stat().st_size > 1000
    assert not list(results.rglob("*.pt")), "the report must not write a model"
    assert seconds < 90, f"nextlab report took {seconds:.1f}s"  # a guard against training creeping in
    # Each figure's data table is flat CSV (DVC plots), NaN spelled out (an empty cell plots as 0).
    tables = list((tmp_path / "data" / "plots").rglob("*.csv"))
    assert tables and all(",," not in t.read_text() for t in tables)


@pytest.mark.e2e
def test_missing_column_says_so_and_others_build(project, study, tmp_path):
    from nextlab.report import build_report

    results = tmp_path / "results" / "smoke"
    shutil.copytree(project["path"] / "results" / "smoke", results,
                    ignore=shutil.ignore_patterns("*.pt"))
    facts = results / "models" / "tiny" / "pretrain" / "facts.csv"
    pd.read_csv(facts).drop(columns=["qa_acc"]).to_csv(facts, index=False)

    report = build_report(study, results, tmp_path / "reports", params_file=SMOKE)
    by_name = {r.instance.stem: r for r in report.figures}
    broken = by_name["pretrain-facts-tiny"]
    assert broken.status == "missing"
    assert str(facts) in broken.problem and "['qa_acc']" in broken.problem
    assert "snakemake --cores 2 --config params=params/smoke.yaml" in broken.problem
    assert broken.png.stat().st_size > 1000  # a placeholder image that says so
    others = [r for r in report.figures if r is not broken]
    assert others and all(r.status == "ok" for r in others), [(r.instance.stem, r.problem) for r in others]
    markdown = report.markdown.read_text()
    assert "lacks column(s) ['qa_acc']" in markdown
    assert not (tmp_path / "reports/plots/pretrain-facts/pretrain-facts-tiny.csv").exists()


@pytest.mark.e2e
def test_no_results_names_what_is_missing_and_the_command(project, tmp_path):
    proc = run(["nextlab", "report", "--params", SMOKE, "--results", str(tmp_path / "results" / "smoke"),
                "--out", str(tmp_path / "reports")], project["path"], check=False)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert "no results to report on" in err
    assert str(tmp_path / "results" / "smoke" / "data" / "qa.parquet") in err
    assert "snakemake --cores 2 --config params=params/smoke.yaml" in err
    assert "Traceback" not in err
    assert not (tmp_path / "reports" / "report.md").exists()


@pytest.mark.e2e
def test_snakemake_report_groups_figures_by_stage(project, study):
    path, env = project["path"], project["env"]
    out = path / "reports" / "smoke" / "snakemake-report.html"
    run(["snakemake", "--cores", "1", "--config", f"params={SMOKE}", "--report", str(out)], path, env)
    html = out.read_text()
    assert len(html) > 100_000  # self-contained: the figures are embedded
    for inst in planned(study):
        assert inst.filename in html, inst.filename
    for stage in {i.figure.stage for i in planned(study)}:
        assert stage in html
    for scheme in study.posttrain.schemes:
        assert scheme in html
