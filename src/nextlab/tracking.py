"""MLflow tracking: every job is a run; results files stay the source of truth.

One pipeline invocation is one parent run (`start_invocation`, called once before any parallel
job creates the database and experiment, so parallel jobs never race to create them); every
stage job is a child run (`stage_run`). Metrics are buffered and sent with `log_batch`: one call
per value is 20-100x slower (see ARCHITECTURE.md). A tracking failure is logged as a warning and
never loses or fails a finished result; `relog` can send a results folder again later.

Where runs go is runtime configuration: `MLFLOW_TRACKING_URI`, defaulting to
`sqlite:///mlflow.db` in the working directory.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nextlab.config import Study
from nextlab.provenance import git_commit, params_hash

log = logging.getLogger(__name__)

PARENT_ENV = "NEXTLAB_MLFLOW_PARENT_RUN_ID"
DEFAULT_URI = "sqlite:///mlflow.db"
_MAX_BATCH = 1000  # MLflow's log_batch limit on metrics per call


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def experiment_name(study: Study) -> str:
    return study.tracking.experiment or f"nextlab/{study.study}"


def invocation_file(study: Study, logs_root: Path = Path("logs")) -> Path:
    return logs_root / study.study / "mlflow_invocation.json"


def _client():
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri())


def ensure_experiment(study: Study) -> str:
    """Create the study's experiment if missing; return its id. Call once, before parallel jobs."""
    client = _client()
    name = experiment_name(study)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    return client.create_experiment(name, tags={"nextlab.study": study.study})


def start_invocation(study: Study, logs_root: Path = Path("logs")) -> dict[str, str] | None:
    """Create the experiment and a parent run for this pipeline invocation; record their ids."""
    if not study.tracking.enabled:
        return None
    try:
        experiment_id = ensure_experiment(study)
        client = _client()
        run = client.create_run(
            experiment_id,
            run_name=f"pipeline/{study.study}/{time.strftime('%Y%m%d-%H%M%S')}",
            tags={
                "nextlab.stage": "pipeline",
                "nextlab.study": study.study,
                "nextlab.git_commit": git_commit(),
                "nextlab.params_hash": params_hash(study),
            },
        )
        client.log_dict(run.info.run_id, study.model_dump(mode="json"), "params.json")
    except Exception as err:  # tracking must never stop the study
        log.warning("MLflow unavailable at %s, runs will not be tracked: %s", tracking_uri(), err)
        return None
    info = {"experiment_id": experiment_id, "parent_run_id": run.info.run_id, "tracking_uri": tracking_uri()}
    path = invocation_file(study, logs_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2) + "\n")
    return info


def end_invocation(study: Study, status: str = "FINISHED", logs_root: Path = Path("logs")) -> None:
    path = invocation_file(study, logs_root)
    if not study.tracking.enabled or not path.exists():
        return
    try:
        info = json.loads(path.read_text())
        _client().set_terminated(info["parent_run_id"], status=status)
    except Exception as err:
        log.warning("could not close the pipeline's MLflow run: %s", err)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = value


def flatten(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`: MLflow params and metrics are flat."""
    out: dict[str, Any] = {}
    _flatten("", mapping, out)
    return out


class _NoClient:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class StageRun:
    """One job's MLflow run. Every method is best-effort: failures become one warning."""

    def __init__(self, client: Any, run_id: str | None):
        # Without a client (tracking disabled or unavailable) callers still name client methods
        # (`self._client.log_batch`) before `_safely` skips them: give them a no-op to name.
        self._client = client if client is not None else _NoClient()
        self.run_id = run_id
        self._metrics: list[Any] = []
        self._warned = False

    @property
    def active(self) -> bool:
        return self.run_id is not None

    def _safely(self, what: str, fn, *args, **kwargs) -> None:
        if not self.active:
            return
        try:
            fn(*args, **kwargs)
        except Exception as err:
            if not self._warned:
                log.warning("MLflow %s failed (results are kept on disk): %s", what, err)
                self._warned = True

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = flatten(params)
        items = [Param(k, str(v)[:6000]) for k, v in flat.items()]
        for start in range(0, len(items), 100):
            self._safely("log_params", self._client.log_batch, self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        """Buffer numeric metrics (nested keys are flattened with dots); sent on `flush`."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for key, value in flatten(metrics).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "item"):
                continue
            value = float(value)
            if value != value or value in (float("inf"), float("-inf")):
                continue
            self._metrics.append(Metric(key, value, now, int(step)))
        if len(self._metrics) >= 5 * _MAX_BATCH:
            self.flush()

    def flush(self) -> None:
        pending, self._metrics = self._metrics, []
        for start in range(0, len(pending), _MAX_BATCH):
            self._safely("log_batch", self._client.log_batch, self.run_id, metrics=pending[start : start + _MAX_BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self._safely("set_tag", self._client.set_tag, self.run_id, key, str(value))

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if Path(path).exists():
            self._safely("log_artifact", self._client.log_artifact, self.run_id, str(path), artifact_path)

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        self._safely("log_dict", self._client.log_dict, self.run_id, obj, artifact_file)


def _invocation(study: Study, logs_root: Path) -> dict[str, str] | None:
    path = invocation_file(study, logs_root)
    if path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
    return None


@contextmanager
def stage_run(
    study: Study,
    stage: str,
    run_name: str,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    data_hash: str | None = None,
    logs_root: Path = Path("logs"),
) -> Iterator[StageRun]:
    """A child run of this invocation's parent run, named e.g. `train/small` or
    `posttrain/small/binary/seed1`, tagged with stage, study, git commit, params and data hash.

    Without a parent (a stage run by hand) the run is created in the study's experiment directly.
    The run ends FINISHED, or FAILED when the block raises (the exception propagates).
    """
    run = StageRun(None, None)
    if study.tracking.enabled:
        try:
            client = _client()
            invocation = _invocation(study, logs_root)
            experiment_id = invocation["experiment_id"] if invocation else ensure_experiment(study)
            all_tags = {
                "nextlab.stage": stage,
                "nextlab.study": study.study,
                "nextlab.git_commit": git_commit(),
                "nextlab.params_hash": params_hash(params if params is not None else study),
                "nextlab.data_hash": data_hash or "",
                **{k: str(v) for k, v in (tags or {}).items()},
            }
            parent = os.environ.get(PARENT_ENV) or (invocation or {}).get("parent_run_id")
            if parent:
                all_tags["mlflow.parentRunId"] = parent
            created = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
            run = StageRun(client, created.info.run_id)
        except Exception as err:
            log.warning("MLflow unavailable at %s, this job is not tracked: %s", tracking_uri(), err)
    if params is not None:
        run.log_params(params)
    try:
        yield run
    except BaseException:
        run.flush()
        run._safely("set_terminated", run._client.set_terminated, run.run_id, "FAILED")
        raise
    run.flush()
    run._safely("set_terminated", run._client.set_terminated, run.run_id, "FINISHED")
