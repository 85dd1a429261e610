"""The MLflow UI over the smoke study's store, opened in headless Chromium: the experiment page
lists every run, the compare page shows the reward schemes' metrics side by side. Screenshots are
kept (the path is printed) under the project copy's reports/smoke/screenshots/ and copied to
logs/test-artifacts/browser/ of this checkout."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from servers import mlflow_server

from conftest import ROOT

CHROMIUM = shutil.which("chromium")
# CI sets NEXTLAB_REQUIRE_BROWSER=1: there a missing browser fails the run instead of skipping.
if CHROMIUM is None and os.environ.get("NEXTLAB_REQUIRE_BROWSER") == "1":
    raise RuntimeError("chromium is not installed and NEXTLAB_REQUIRE_BROWSER=1: run `make browser` as root")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make browser installs it)"),
]

ARTIFACTS = ROOT / "logs" / "test-artifacts" / "browser"
HEADLINE = ("eval/accuracy", "eval/hallucination", "eval/abstention")  # MLflow's names: grouped by `/`


@pytest.fixture(scope="module")
def project(smoke_project):
    return smoke_project


@pytest.fixture(scope="module")
def store(project):
    """The experiment and its runs, read straight from the sqlite store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=project["env"]["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("nextlab/smoke")
    assert experiment is not None, "the smoke run created no MLflow experiment"
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    return {"experiment": experiment, "runs": runs}


@pytest.fixture(scope="module")
def server(project):
    """A real `mlflow server` on a free 127.0.0.1 port over the study's store; stopped after."""
    with mlflow_server(project["env"]["MLFLOW_TRACKING_URI"], project["path"],
                       project["path"] / "logs" / "mlflow-server.log") as url:
        yield url


@pytest.fixture(scope="module")
def shots(project):
    folder = project["path"] / "reports" / "smoke" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for png in folder.glob("*.png"):
        shutil.copy2(png, ARTIFACTS / png.name)
    print(f"\nscreenshots: {folder} (copied to {ARTIFACTS})")


def chromium(url: str, tmp: Path, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran (and, optionally, a screenshot of it)."""
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--virtual-time-budget=60000", "--window-size=1600,4000"]

    def call(*extra: str) -> str:
        profile = tmp / f"chromium-{time.monotonic_ns()}"  # a fresh profile: no saved UI state
        proc = subprocess.run([*base, f"--user-data-dir={profile}", *extra, url], capture_output=True,
                              text=True, timeout=240)
        shutil.rmtree(profile, ignore_errors=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    dom = call("--dump-dom")
    if screenshot is not None:
        call(f"--screenshot={screenshot}")
        assert screenshot.stat().st_size > 10_000, f"{screenshot} looks blank"
    return dom


def visible_text(dom: str) -> str:
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def test_experiment_page_lists_the_runs(server, store, shots, tmp_path):
    from nextlab.report.mlflow_view import VIEW_TAG, runs_path

    experiment = store["experiment"]
    # The report job saved a view that expands the pipeline runs (children start collapsed).
    assert VIEW_TAG in experiment.tags, "the report stage did not save the MLflow shared view"
    text = visible_text(chromium(f"{server}/{runs_path(experiment.experiment_id)}", tmp_path,
                                 shots / "experiment-runs.png"))
    names = sorted({r.info.run_name for r in store["runs"]})
    assert f"{len(store['runs'])} matching runs" in text
    missing = [name for name in names if name not in text]
    assert not missing, f"the experiment page does not list {missing}"


def test_compare_page_shows_the_schemes_metrics(server, store, shots, tmp_path):
    from nextlab.report.mlflow_view import SCHEMES_KEY, compare_path, runs_path, scheme_runs

    experiment = store["experiment"]
    evaluated = scheme_runs(store["runs"])
    if evaluated:  # the post-training schemes side by side, under the same metric keys
        chosen = evaluated
        schemes = {r.data.tags["nextlab.scheme"] for r in evaluated}
        assert len(schemes) >= 2, f"only scheme(s) {schemes} were evaluated"
        for run in chosen:
            assert set(HEADLINE) <= set(run.data.metrics), f"{run.info.run_name} lacks headline metrics"
        # The report's "schemes" view: one row per evaluation run, headline metrics as columns.
        text = visible_text(chromium(f"{server}/{runs_path(experiment.experiment_id, SCHEMES_KEY)}", tmp_path,
                                     shots / "schemes-table.png"))
        assert f"{len(chosen)} matching runs" in text
        for run in chosen:
            assert run.info.run_name in text, f"{run.info.run_name} is not in the schemes table"
        for key in HEADLINE:
            assert key in text, f"column {key} is not in the schemes table"
        # The compare page's metric table is scrolled inside itself: only the first rows (in
        # alphabetical order) render; the calibration group comes first.
        keys: tuple[str, ...] = ("calib/",)
    else:  # before evaluation exists: whatever stage runs there are, each with a metric of its own
        chosen = [r for r in store["runs"] if r.data.tags.get("nextlab.stage") != "pipeline" and r.data.metrics]
        keys = tuple(sorted({sorted(r.data.metrics)[0] for r in chosen}))
    assert chosen
    text = visible_text(chromium(f"{server}/{compare_path(experiment.experiment_id, [r.info.run_id for r in chosen])}",
                                 tmp_path, shots / "compare-runs.png"))
    assert f"Comparing {len(chosen)} Runs" in text
    for run in chosen:
        assert run.info.run_name in text, f"{run.info.run_name} is not on the compare page"
    for key in keys:
        assert re.search(rf"\b{re.escape(key)}\b", text), f"metric {key} is not on the compare page"
    (shots / "compare-runs.json").write_text(json.dumps([r.info.run_name for r in chosen], indent=1))


def test_experiment_opens_on_its_runs_table(server, store, shots, tmp_path):
    """The experiment link a study prints opens on the runs table, not MLflow's GenAI overview of
    traces (the experiment is marked as model development, the link names the ML workflow)."""
    from nextlab.report.mlflow_view import WORKFLOW

    experiment = store["experiment"]
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    text = visible_text(chromium(f"{server}/#/experiments/{experiment.experiment_id}?{WORKFLOW}", tmp_path,
                                 shots / "experiment-default.png"))
    assert "matching runs" in text and "pipeline/smoke" in text, text[:2000]


def test_chart_view_groups_the_headline_metrics(server, store, shots, tmp_path):
    from nextlab.report.mlflow_view import SCHEMES_KEY, runs_path

    experiment = store["experiment"]
    url = f"{server}/{runs_path(experiment.experiment_id, SCHEMES_KEY)}&compareRunsMode=CHART"
    text = visible_text(chromium(url, tmp_path, shots / "chart-view.png"))
    # one section per `/` group, the headline groups first, the schemes' runs side by side inside
    for section in ("calib", "eval"):
        assert re.search(rf"\b{section} \(\d+\)", text), f"no {section} section in the chart view"
    assert "eval/hallucination" in text
