"""A live job's MLflow run (real MLflow, a SQLite store of the test's own) samples the machine's
CPU and memory into `system/` metrics while the job works."""

from __future__ import annotations

import time

import pytest

from nextlab import tracking
from nextlab.config import Study


def test_a_live_job_logs_system_metrics(tmp_path, monkeypatch):
    pytest.importorskip("psutil")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.delenv(tracking.OFF_ENV, raising=False)
    monkeypatch.setattr(tracking, "SYSTEM_METRICS_INTERVAL_S", 0.2)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.json").write_text('{"loss": 1.0}')
    job = tracking.Job(stage="train", name="train/probe", out=tmp_path / "out", live=True)
    with tracking.tracked(Study(), job, logs_root=tmp_path / "logs") as run:
        run_id = run.run_id
        time.sleep(1.5)  # the job's work: long enough for several samples
    client = MlflowClient(tracking_uri=uri)
    logged = client.get_run(run_id).data.metrics
    assert any(key.startswith("system/cpu_utilization") for key in logged), sorted(logged)
    assert any(key.startswith("system/system_memory_usage") for key in logged), sorted(logged)
    assert client.get_run(run_id).info.status == "FINISHED"
