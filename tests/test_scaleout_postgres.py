"""Scale-out, for real: the smoke study logging to an MLflow server on PostgreSQL (Debian's
`postgresql`, started here), two jobs at a time, artifacts proxied through the server; then the
same with the server killed mid-study and `nextlab relog` bringing it up to date. The runs must
equal those of the sqlite run (`smoke_project`) in names, tags, params, metrics and artifacts.

Run with `make test-scaleout` (it installs the pinned extras); skipped without PostgreSQL unless
NEXTLAB_REQUIRE_SCALEOUT=1 (CI), where a missing piece fails.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from servers import mlflow_server, postgres_bin, postgres_cluster, start_mlflow_server, stop

from conftest import make_project_copy, project_env, run

pytestmark = pytest.mark.scaleout

SMOKE = ["snakemake", "--cores", "2", "--config", "params=params/smoke.yaml"]
# What differs between two runs of the same study by design: how long things took, where and when.
VARYING_METRIC_PREFIXES = ("time/", "system/")
VARYING_TAGS = {"mlflow.source.name", "mlflow.user", "nextlab.parent_run", "nextlab.invocation", "mlflow.parentRunId",
                "nextlab.host", "nextlab.record", "mlflow.log-model.history", "nextlab.resumed",
                "nextlab.relogged"}


def _required() -> bool:
    return os.environ.get("NEXTLAB_REQUIRE_SCALEOUT") == "1"


@pytest.fixture(scope="module")
def postgres():
    if postgres_bin() is None or not _has_psycopg2():
        if _required():
            pytest.fail("PostgreSQL or psycopg2 is missing: run `make test-scaleout`, which installs them")
        pytest.skip("PostgreSQL or psycopg2 not installed (make test-scaleout installs them)")
    with postgres_cluster() as cluster:
        yield cluster


def _has_psycopg2() -> bool:
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return False
    return True


def runs_of(uri: str, experiment_name: str) -> dict[str, dict]:
    """Every job run of the experiment by run name: params, comparable metrics and tags, artifact paths."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None, f"{uri}: no experiment {experiment_name!r}"
    out: dict[str, dict] = {}
    for r in client.search_runs([experiment.experiment_id], max_results=10_000):
        if r.data.tags.get("nextlab.stage") in ("pipeline", "relog"):  # an invocation or a relog, not a job
            continue
        if r.info.status == "KILLED" and "nextlab.superseded_by" in r.data.tags:
            continue  # in flight when the server died; relog sent the whole run and marked this one
        assert r.info.run_name not in out, f"{uri}: two runs named {r.info.run_name}"
        out[r.info.run_name] = {
            "status": r.info.status,
            "params": dict(r.data.params),
            "metrics": {k: v for k, v in r.data.metrics.items() if not k.startswith(VARYING_METRIC_PREFIXES)},
            "tags": {k: v for k, v in r.data.tags.items() if k not in VARYING_TAGS},
            "artifacts": sorted(_artifact_paths(client, r.info.run_id)),
        }
    return out


def _artifact_paths(client, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found += _artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def assert_same_runs(got: dict[str, dict], want: dict[str, dict]) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        for part in ("status", "params", "tags", "artifacts"):
            assert got[name][part] == want[name][part], (name, part)
        assert got[name]["metrics"].keys() == want[name]["metrics"].keys(), name
        for key, value in want[name]["metrics"].items():
            assert got[name]["metrics"][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, key)


def test_smoke_study_on_a_postgres_server_logs_what_sqlite_does(postgres, smoke_project, tmp_path):
    postgres["createdb"]("mlflow_study")
    project = make_project_copy(tmp_path / "project")
    artifacts = tmp_path / "artifacts"
    with mlflow_server(postgres["url"]("mlflow_study"), tmp_path, tmp_path / "server.log", artifacts) as url:
        env = project_env(project, {"MLFLOW_TRACKING_URI": url})
        run(SMOKE, project, env)
        got = runs_of(url, "nextlab/smoke")
    want = runs_of(smoke_project["env"]["MLFLOW_TRACKING_URI"], "nextlab/smoke")
    assert_same_runs(got, want)
    assert any(artifacts.rglob("metrics.json")), "the server stored no artifacts in its destination"


def test_server_killed_mid_study_then_relog_catches_up(postgres, smoke_project, tmp_path):
    postgres["createdb"]("mlflow_killed")
    project = make_project_copy(tmp_path / "project")
    artifacts, log = tmp_path / "artifacts", tmp_path / "server.log"
    backend = postgres["url"]("mlflow_killed")
    server, url = start_mlflow_server(backend, tmp_path, log, artifacts)
    env = project_env(project, {"MLFLOW_TRACKING_URI": url})
    study = subprocess.Popen(SMOKE, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        trained = project / "results" / "smoke" / "models" / "tiny" / "pretrain" / "metrics.json"
        deadline = time.time() + 300
        while not trained.exists():
            assert study.poll() is None, study.stdout.read()[-3000:]
            assert time.time() < deadline
            time.sleep(0.2)
    finally:
        stop(server)  # mid-study: pretraining done, the rest to come
    output, _ = study.communicate(timeout=900)
    assert study.returncode == 0, output[-3000:]
    for name in ("report.html", "findings.json"):
        assert (project / "reports" / "smoke" / name).stat().st_size > 0
    with mlflow_server(backend, tmp_path, log, artifacts) as url:  # the same database, back up
        env = project_env(project, {"MLFLOW_TRACKING_URI": url})
        relog = ["nextlab", "relog", "--results", "results/smoke", "reports/smoke"]
        first = run(relog, project, env)
        again = run(relog, project, env)
        got = runs_of(url, "nextlab/smoke")
    assert "sent 0 run(s)" in again.stdout and "sent 0 run(s)" not in first.stdout
    want = runs_of(smoke_project["env"]["MLFLOW_TRACKING_URI"], "nextlab/smoke")
    assert sorted(got) == sorted(want)
    assert all(r["status"] == "FINISHED" for r in got.values())
    for name in want:
        assert got[name]["params"] == want[name]["params"], name
        assert got[name]["metrics"].keys() == want[name]["metrics"].keys(), name
        assert got[name]["artifacts"] == want[name]["artifacts"], name
