"""MLflow tracking: every job is a run; the results files stay the source of truth.

A job describes its run once, as a `Job` (name, tags, params, and which of its files hold its
metrics, curves and artifacts). `tracked(study, job)` wraps the stage at the edge: it opens the run,
streams the per-step curve the stage reports, and when the stage has written its files, saves the
description as `run.json` in the job's folder and logs those files. `relog` replays `run.json`
files, so a results folder made while the server was down (or copied from another machine) can be
sent later; it is idempotent, because every run carries `nextlab.record`, a digest of what it
logged, and a record already on the server is skipped.

One pipeline invocation is one parent run (`start_invocation`, called once before any parallel job
creates the database and experiment, so parallel jobs never race to create them). A resumed
invocation (same params, after a failure or a kill) continues its parent run; runs left RUNNING by
a killed invocation are marked KILLED.

Faults cost seconds: a tracking server that does not answer is found by one short probe
(`unreachable`) before any job; the invocation then sets `NEXTLAB_TRACKING_OFF` and its jobs run
untracked. MLflow's own HTTP retries are shortened, and a run whose first call fails stops trying.

Where runs go is runtime configuration: `MLFLOW_TRACKING_URI`, defaulting to `sqlite:///mlflow.db`
in the working directory. Metrics are sent with `log_batch` (one call per value is 20-100x slower).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import re
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nextlab.io import write_json
from nextlab.provenance import git_state, params_hash, running_code_hash

log = logging.getLogger(__name__)

PARENT_ENV = "NEXTLAB_MLFLOW_PARENT_RUN_ID"
OFF_ENV = "NEXTLAB_TRACKING_OFF"
STUDY_HASH_ENV = "NEXTLAB_STUDY_PARAMS_HASH"  # the whole study's params hash, set by the workflow
DEFAULT_URI = "sqlite:///mlflow.db"
RECORD_FILE = "run.json"
RECORD_FORMAT, RECORD_VERSION = "nextlab-run", 1
RECORD_TAG = "nextlab.record"
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
PROBE_SECONDS = 3.0
_MAX_BATCH = 1000  # MLflow's log_batch limit on metrics per call
# MLflow retries a failing HTTP call 7 times with exponential back-off (minutes per call): a down
# server would stall every job. A few quick retries are enough for a server that is up.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_DISABLE_TELEMETRY": "true"}


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def experiment_name(study: Any) -> str:
    return study.tracking.experiment or f"nextlab/{study.study}"


def invocation_file(study: Any, logs_root: Path = Path("logs")) -> Path:
    return logs_root / study.study / "mlflow_invocation.json"


def unreachable(uri: str | None = None, timeout: float = PROBE_SECONDS) -> str | None:
    """Why the tracking store at `uri` cannot be used, found in at most `timeout` seconds; None if
    it answers. HTTP(S) servers are asked for `/health`; a sqlite file needs a writable folder."""
    uri = uri or tracking_uri()
    if uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
                if response.status >= 400:
                    return f"{uri} answered HTTP {response.status}"
        except (urllib.error.URLError, OSError, ValueError) as err:
            return f"{uri} does not answer ({getattr(err, 'reason', err)})"
        return None
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).expanduser().resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            return f"{uri}: folder {folder} is missing or not writable"
    return None


def _client():
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri())


def ensure_experiment(client: Any, study: Any) -> str:
    """Create the study's experiment if missing; return its id. Call once, before parallel jobs."""
    return _experiment(client, experiment_name(study), study.study)


def _experiment(client: Any, name: str, study: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(name, tags={"nextlab.study": study})
        except Exception:  # another process created it first
            experiment_id = client.get_experiment_by_name(name).experiment_id
    else:
        experiment_id = experiment.experiment_id
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment_id)
    if experiment is None or experiment.tags.get(KIND_TAG) != KIND:
        # Model development, not GenAI: the UI opens the experiment on its runs table.
        client.set_experiment_tag(experiment_id, KIND_TAG, KIND)
    return experiment_id


def _tracking_off(study: Any) -> str | None:
    if not study.tracking.enabled:
        return "tracking.enabled is false"
    return os.environ.get(OFF_ENV) or None


# ---- one invocation of the pipeline ------------------------------------------------------------

def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_running_children(client: Any, experiment_id: str, parent_run_id: str) -> int:
    """Mark KILLED the child runs a dead invocation left RUNNING (their jobs died with it)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'RUNNING'",
        max_results=1000,
    )
    for run in runs:
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(runs)


def start_invocation(study: Any, logs_root: Path = Path("logs"), pid: int | None = None) -> dict[str, Any]:
    """Open this invocation's parent run (or continue the one a failed or killed invocation with the
    same params left), after one quick probe of the tracking store.

    Returns the invocation record; `{"off": reason}` when jobs should run untracked."""
    off = _tracking_off(study) or unreachable()
    if off:
        if study.tracking.enabled:
            log.warning("MLflow tracking is off for this run: %s. Results are kept; send them later with "
                        "`nextlab relog --results results/%s`", off, study.study)
        return {"off": off}
    path = invocation_file(study, logs_root)
    previous = _read_json(path)
    pid = pid or os.getpid()
    try:
        client = _client()
        experiment_id = ensure_experiment(client, study)
        study_hash = params_hash(study)
        parent = None
        if previous and previous.get("status") == "RUNNING" and not _pid_alive(previous.get("pid")):
            # The invocation died without closing its runs (kill -9, power loss).
            killed = _kill_running_children(client, previous["experiment_id"], previous["parent_run_id"])
            client.set_terminated(previous["parent_run_id"], status="KILLED")
            previous["status"] = "KILLED"
            log.warning("the previous invocation (pid %s) died: its parent run and %d running job run(s) are "
                        "marked KILLED", previous.get("pid"), killed)
        resumable = (previous and previous.get("status") in ("KILLED", "FAILED")
                     and previous.get("params_hash") == study_hash and previous.get("tracking_uri") == tracking_uri()
                     and previous.get("experiment_id") == experiment_id)
        if resumable:
            parent = previous["parent_run_id"]
            _kill_running_children(client, experiment_id, parent)
            client.update_run(parent, status="RUNNING")
            client.set_tag(parent, "nextlab.resumed", str(int(previous.get("resumed", 0)) + 1))
            log.info("continuing the parent run %s of the %s invocation", parent, previous["status"].lower())
        else:
            commit, dirty = git_state()
            run = client.create_run(
                experiment_id,
                run_name=f"pipeline/{study.study}/{time.strftime('%Y%m%d-%H%M%S')}",
                tags={"nextlab.stage": "pipeline", "nextlab.study": study.study, "nextlab.git_commit": commit,
                      "nextlab.git_dirty": str(dirty), "mlflow.source.git.commit": commit,
                      "nextlab.params_hash": study_hash},
            )
            parent = run.info.run_id
            client.log_dict(parent, study.model_dump(mode="json"), "params.json")
    except Exception as err:  # tracking must never stop the study
        log.warning("MLflow unavailable at %s, runs will not be tracked: %s", tracking_uri(), err)
        return {"off": str(err)}
    info = {"experiment_id": experiment_id, "parent_run_id": parent, "tracking_uri": tracking_uri(),
            "params_hash": study_hash, "status": "RUNNING", "pid": pid,
            "resumed": int(previous.get("resumed", 0)) + 1 if resumable else 0}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, info)
    return info


def end_invocation(study: Any, status: str = "FINISHED", logs_root: Path = Path("logs"),
                   results_root: Path = Path("results"), reports_root: Path = Path("reports")) -> None:
    """Send the records of the invocation's jobs (every one the server lacks, also those of an
    earlier invocation that was cut off), then close its parent run."""
    path = invocation_file(study, logs_root)
    info = _read_json(path)
    if not info or os.environ.get(OFF_ENV) or not study.tracking.enabled:
        return
    try:
        roots = [results_root / study.study, reports_root / study.study]
        if find_records(*roots):
            counts = relog(roots, parent_run_id=info["parent_run_id"])
            log.info("MLflow: sent %d job run(s) (%d were there already)", counts["sent"], counts["present"])
        _client().set_terminated(info["parent_run_id"], status=status)
    except Exception as err:
        log.warning("could not send the jobs' runs or close the pipeline's MLflow run (results are kept; "
                    "`nextlab relog --results results/%s` sends them later): %s", study.study, err)
    info["status"] = status
    write_json(path, info)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# ---- one job -----------------------------------------------------------------------------------

@dataclass
class Job:
    """What one job's MLflow run holds, all of it read back from files in `out` (`relog` too).

    metrics: JSON files of numbers (flat or nested; nested keys are joined with dots);
    curves: CSV files with a `step` column, every other numeric column a per-step metric, or
        (file, prefix) pairs whose columns are logged as `<prefix>.<column>`;
    artifacts: files, or (file, artifact folder) pairs. Paths are relative to `out`.
    """

    stage: str
    name: str
    out: Path
    tags: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    data_hash: str | None = None
    metrics: list[str] = field(default_factory=lambda: ["metrics.json"])
    curves: list[str] = field(default_factory=list)
    artifacts: list[Any] = field(default_factory=list)
    tables: list[Any] = field(default_factory=list)  # (parquet file, MLflow table artifact) pairs
    upstream: dict[str, str] = field(default_factory=dict)  # hashes of what the job read
    live: bool = False  # a long job: its run is open (and its curve streamed) while it works

    def record(self, study: Any) -> dict[str, Any]:
        commit, dirty = git_state()
        tags = {
            "nextlab.stage": self.stage,
            "nextlab.study": study.study,
            "nextlab.git_commit": commit,
            "nextlab.git_dirty": str(dirty),
            "mlflow.source.git.commit": commit,
            "nextlab.code_hash": running_code_hash() or "",
            "nextlab.params_hash": params_hash(self.params),
            "nextlab.data_hash": self.data_hash or "",
            **({"nextlab.study_params_hash": os.environ[STUDY_HASH_ENV]} if os.environ.get(STUDY_HASH_ENV) else {}),
            **({"nextlab.dvc_exp": os.environ["DVC_EXP_NAME"]} if os.environ.get("DVC_EXP_NAME") else {}),
            **{f"nextlab.upstream.{k}": v for k, v in self.upstream.items()},
            **{k: str(v) for k, v in self.tags.items()},
        }
        body = {k: v for k, v in asdict(self).items() if k not in ("out", "tags", "live")}
        return {"format": RECORD_FORMAT, "version": RECORD_VERSION, "experiment": experiment_name(study),
                **body, "tags": tags}


def record_digest(folder: Path, record: dict[str, Any]) -> str:
    """A digest of everything a run logs from `folder`: the record and its metrics and curve files."""
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode())
    for item in [*record["metrics"], *record["curves"]]:
        path = folder / (item if isinstance(item, str) else item[0])
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()[:24]


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`: MLflow params and metrics are flat."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


# How a results file's keys appear in MLflow: grouped with `/` (the UI's chart view draws one
# section per group, in alphabetical order, so the headline groups `calib` and `eval` come first),
# intervals apart from the values, speed apart from the results. The files keep their own names.
_GROUPS = [
    (re.compile(r"^(k\d+|unseen)\.(.+)$"), r"mentions/\1/\2"),
    (re.compile(r"^score_(.+)$"), r"score/\1"),
    (re.compile(r"^(accuracy|hallucination|abstention|accuracy_when_attempted|best_guess_accuracy)$"), r"eval/\1"),
    (re.compile(r"^((?:cand_|stated_)?(?:ece|ece_mass|ece_ts|mce|brier|nll|auroc|aurc)|temperature)$"), r"calib/\1"),
    (re.compile(r"^audit_(.+)$"), r"selective/\1"),
    (re.compile(r"^ref_(.+)$"), r"reference/\1"),
    (re.compile(r"^(train_loss|val_loss|val_perplexity)$"), r"loss/\1"),
    (re.compile(r"^((?:bio|qa)_acc.*)$"), r"facts/\1"),
    (re.compile(r"^(first|final)_(.+)$"), r"\1/\2"),
    (re.compile(r"^(tokens_per_s|ms_per_step|mfu|peak_memory_mb|seconds|\w+_seconds)$"), r"time/\1"),
]
# Numbers that describe a job rather than measure it: logged as params, not as metrics. (The
# CPU's peak FLOP/s is measured each run, so it is a timing metric, not one of these.)
FACTS = {"params", "flops_per_token", "threads", "processes", "steps", "tokens", "examples", "n_questions",
         "n_seeds", "vocab_size"}


def metric_name(key: str, group: str = "") -> str:
    """The MLflow key of a results file's key (`group`: a file's own group, e.g. `time`).

    >>> metric_name("score_t0.75"), metric_name("ece_lo"), metric_name("k16.accuracy")
    ('score/t0.75', 'interval/calib/ece_lo', 'mentions/k16/accuracy')
    >>> metric_name("tokens_per_s", "time"), metric_name("small/binary/accuracy")
    ('time/tokens_per_s', 'small/binary/accuracy')
    """
    if group:
        return f"{group}/{key}"
    for suffix in ("_lo", "_hi"):
        if key.endswith(suffix):
            return f"interval/{metric_name(key.removesuffix(suffix))}{suffix}"
    for pattern, name in _GROUPS:
        if pattern.match(key):
            return pattern.sub(name, key)
    return key.replace(".", "/")


def _display(value: float) -> float:
    """Six significant digits, and float noise below 1e-12 as zero (the UI prints every digit)."""
    return 0.0 if abs(value) < 1e-12 else float(f"{value:.6g}")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# Seconds between samples of a live job's CPU, memory and GPU use (MLflow's default is 10).
SYSTEM_METRICS_INTERVAL_S = 5.0

class StageRun:
    """One MLflow run. Every call is best-effort: the first failure is one warning, and the run
    stops calling the server (each call to a dead server would cost its time-out again)."""

    def __init__(self, client: Any = None, run_id: str | None = None):
        self._client = client
        self.run_id = run_id
        self._metrics: list[Any] = []
        self.streamed = False
        self.curve_keys: set[str] = set()  # metrics logged per step; a metrics file's final value of one is its last step
        self.facts: dict[str, Any] = {}  # numbers that describe the job, logged as params

    @property
    def active(self) -> bool:
        return self.run_id is not None and self._client is not None

    def _safely(self, what: str, fn_name: str, *args: Any, **kwargs: Any) -> None:
        if not self.active:
            return
        try:
            getattr(self._client, fn_name)(*args, **kwargs)
        except Exception as err:
            log.warning("MLflow %s failed; this job's run is left as it is (results are on disk, "
                        "`nextlab relog` sends them later): %s", what, err)
            self._client = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for start in range(0, len(items), 100):
            self._safely("log_params", "log_batch", self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0, group: str = "",
                    skip: set[str] | frozenset[str] = frozenset()) -> set[str]:
        """Buffer the numeric metrics under their MLflow names (`metric_name`; nested keys joined
        with dots first), but for `FACTS`, kept for the params; sent by `flush`. Returns the names."""
        if not self.active:
            return set()
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        names = set()
        for key, value in flatten(metrics).items():
            number = _number(value)
            if number is None:
                continue
            if key in FACTS:
                self.facts[key] = value
                continue
            name = metric_name(key, group)
            if name not in skip:
                self._metrics.append(Metric(name, _display(number), now, int(step)))
                names.add(name)
        if len(self._metrics) >= 5 * _MAX_BATCH:
            self.flush()
        return names

    def log_step(self, row: Mapping[str, Any]) -> None:
        """A stage's per-step hook: the row's numbers at its `step`."""
        self.streamed = True
        self.curve_keys |= self.log_metrics({k: v for k, v in row.items() if k != "step"}, step=int(row["step"]))

    def flush(self) -> None:
        pending, self._metrics = self._metrics, []
        for start in range(0, len(pending), _MAX_BATCH):
            self._safely("log_batch", "log_batch", self.run_id, metrics=pending[start : start + _MAX_BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for start in range(0, len(items), 100):
            self._safely("set_tags", "log_batch", self.run_id, tags=items[start : start + 100])

    def log_table(self, path: Path, artifact_file: str) -> None:
        """A parquet table as an MLflow table artifact (the UI previews it)."""
        if path.is_file() and self.active:
            import pandas as pd

            table = pd.read_parquet(path)
            # MLflow looks for text columns as `object` (pandas 3 reads them as `str` and warns)
            table = table.astype({c: object for c in table.columns if pd.api.types.is_string_dtype(table[c])})
            self._safely("log_table", "log_table", self.run_id, data=table, artifact_file=artifact_file)

    def log_dataset(self, experiment: str, data_hash: str, study: str) -> None:
        """The study's data (the data stage's folder) as the run's input, its data hash the digest."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(name=f"{study or experiment}/data", digest=data_hash, source_type="local",
                          source=json.dumps({"uri": f"results/{study}/data"}))
        self._safely("log_inputs", "log_inputs", self.run_id,
                     datasets=[DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])])

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if Path(path).exists():
            self._safely("log_artifact", "log_artifact", self.run_id, str(path), artifact_path)

    def watch_system(self, interval_s: float | None = None) -> None:
        """Sample CPU, memory (and GPU, where there is one) into the run's `system/` metrics while
        the job works: MLflow's own monitor, on a thread, for the jobs whose run is open."""
        if not self.active:
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            # its INFO lines ("skip logging GPU metrics", "started monitoring") would land in every
            # job's stderr, and a job that stops on bad input must print one line only
            logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)

            self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=interval_s or SYSTEM_METRICS_INTERVAL_S,
                                                 tracking_uri=tracking_uri())
            self._monitor.start()
        except Exception as err:  # psutil missing, or a store that refuses: the job goes on
            log.warning("system metrics are not logged: %s", err)

    def end(self, status: str) -> None:
        monitor = getattr(self, "_monitor", None)
        if monitor is not None:
            try:
                monitor.finish()
            except Exception as err:
                log.warning("system metrics monitor did not stop cleanly: %s", err)
        self.flush()
        self._safely("set_terminated", "set_terminated", self.run_id, status)


def _read_curve(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def send(run: StageRun, folder: Path, record: dict[str, Any], curves: bool = True) -> None:
    """Log a job's params, and its files as its record describes them (metrics, curves, artifacts),
    and tag the run with the record's tags and digest."""
    if curves:
        for item in record["curves"]:
            name, group = (item, "") if isinstance(item, str) else item
            if (folder / name).is_file():
                for row in _read_curve(folder / name):
                    if _number(row.get("step")) is not None:
                        values = {k: v for k, v in row.items() if k != "step"}
                        run.curve_keys |= run.log_metrics(values, step=int(float(row["step"])), group=group)
    for item in record["metrics"]:
        name, group = (item, "") if isinstance(item, str) else item
        if (folder / name).is_file():
            run.log_metrics(json.loads((folder / name).read_text()), group=group, skip=run.curve_keys)
    run.log_params({**record["params"], "facts": run.facts})
    for item in record["artifacts"]:
        name, artifact_dir = (item, None) if isinstance(item, str) else item
        run.log_artifact(folder / name, artifact_dir)
    for name, artifact_file in record.get("tables", []):
        run.log_table(folder / name, artifact_file)
    if record.get("data_hash"):
        run.log_dataset(record["experiment"], record["data_hash"], record["tags"].get("nextlab.study", ""))
    run.flush()
    run.set_tags({**record["tags"], RECORD_TAG: record_digest(folder, record)})


def _seconds_since_start() -> float:
    """How long this process has run (Linux: its start tick against the boot clock); start-up is
    the time to reach the stage's work."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return float("nan")


def _terminate_on_sigterm() -> None:
    """Turn SIGTERM (what a scheduler or Snakemake sends) into an exception, so the run is closed
    as KILLED rather than left RUNNING."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        pass


def _open_run(study: Any, job: Job, logs_root: Path) -> StageRun:
    try:
        client = _client()
        invocation = _read_json(invocation_file(study, logs_root)) or {}
        if invocation.get("tracking_uri") != tracking_uri():
            invocation = {}  # another store's ids
        experiment_id = invocation.get("experiment_id") or ensure_experiment(client, study)
        tags = job.record(study)["tags"]
        parent = os.environ.get(PARENT_ENV)  # only a job of a running invocation is its child
        if parent:
            tags["mlflow.parentRunId"] = tags["nextlab.invocation"] = parent
        return StageRun(client, client.create_run(experiment_id, run_name=job.name, tags=tags).info.run_id)
    except Exception as err:
        log.warning("MLflow unavailable at %s, this job is not tracked (results are kept; "
                    "`nextlab relog` sends them later): %s", tracking_uri(), err)
        return StageRun()


@contextmanager
def tracked(study: Any, job: Job, logs_root: Path = Path("logs")) -> Iterator[StageRun]:
    """Run a stage at the edge of tracking; on success write its record, `<out>/run.json`.

    A `live` job (a long one: pretraining) opens its MLflow run first and streams its curve; the run
    ends FINISHED, FAILED when the block raises, KILLED when it is interrupted. Any other job only
    writes its record: under a pipeline invocation the invocation sends every new record when it
    ends (so a short job never pays MLflow's seconds of start-up), and run by hand it is sent at
    once. Either way a record the server already has is never sent twice.
    """
    entered = time.time()
    startup = _seconds_since_start()
    run = StageRun()
    invocation = bool(os.environ.get(PARENT_ENV))
    off = _tracking_off(study)
    if not off and not invocation and (job.live or study.tracking.enabled):
        off = unreachable()  # run by hand, not under an invocation that already probed
        if off:
            log.warning("MLflow tracking is off, this job is not tracked (results are kept; `nextlab relog` "
                        "sends them later): %s", off)
    if not off and job.live:
        run = _open_run(study, job, logs_root)
        run.watch_system()
    _terminate_on_sigterm()
    try:
        yield run
    except KeyboardInterrupt:
        run.end("KILLED")
        raise
    except BaseException as err:
        run.set_tags({"nextlab.error": str(err)[:500]})
        run.end("FAILED")
        raise
    worked = time.time()
    record = job.record(study)  # now, with what the stage found out (e.g. the data hash it made)
    write_json(job.out / RECORD_FILE, record)
    if run.active:
        send(run, job.out, record, curves=not run.streamed)
        run.end("FINISHED")
    elif not off and not invocation:
        run = _open_run(study, job, logs_root)
        send(run, job.out, record)
        run.end("FINISHED")
    # One line per job that `benchmarks/study_time.py` reads back from the job's log.
    log.info("job timing: start-up %.2f s, work %.2f s, tracking %.2f s", startup, worked - entered,
             time.time() - worked)


# ---- sending a results folder again ---------------------------------------------------------------

def find_records(*roots: Path) -> list[Path]:
    """Every job folder under the roots that holds a run record, in a stable order."""
    return sorted({path.parent for root in roots if Path(root).is_dir() for path in Path(root).rglob(RECORD_FILE)})


def _sent_digests(client: Any, experiment_id: str) -> set[str]:
    """The record digests the finished runs of an experiment carry (one query, not one per job)."""
    digests, token = set(), None
    while True:
        page = client.search_runs([experiment_id], filter_string="attributes.status = 'FINISHED'",
                                  max_results=5000, page_token=token)
        digests |= {r.data.tags[RECORD_TAG] for r in page if RECORD_TAG in r.data.tags}
        token = page.token
        if not token:
            return digests


def _supersede(client: Any, experiment_id: str, name: str, by: str) -> None:
    """Mark KILLED the runs of job `name` that a lost server left RUNNING (the job ended while it
    was down; the complete run is `by`). Run relog when no study is running."""
    stale = client.search_runs([experiment_id], f"attributes.run_name = '{name}' and attributes.status = 'RUNNING'")
    for r in stale:
        if r.info.run_id != by:
            client.set_tag(r.info.run_id, "nextlab.superseded_by", by)
            client.set_terminated(r.info.run_id, "KILLED")


def relog(results: Path | list[Path], dry_run: bool = False, parent_run_id: str | None = None) -> dict[str, int]:
    """Send every job of a results folder that the tracking server lacks; skip the ones it has.

    A job counts as present when a FINISHED run in its experiment carries its record digest, so
    relogging twice sends nothing the second time. The runs sent become children of
    `parent_run_id` (an invocation sending its jobs), else of a new `relog/<time>` run. Returns
    counts of `sent` and `present` runs."""
    from nextlab.errors import InputFileError, NextlabError

    roots = [Path(r) for r in (results if isinstance(results, list) else [results])]
    folders = find_records(*roots)
    if not folders:
        raise InputFileError(f"{', '.join(map(str, roots))}: no job records ({RECORD_FILE}) found; run the study first")
    off = unreachable()
    if off:
        raise NextlabError(f"cannot relog: {off}")
    client = _client()
    counts = {"sent": 0, "present": 0}
    parents: dict[str, str] = {}
    sent: dict[str, set[str]] = {}
    for folder in folders:
        record = _read_json(folder / RECORD_FILE)
        if not record or record.get("format") != RECORD_FORMAT:
            raise InputFileError(f"{folder / RECORD_FILE}: not a nextlab run record")
        digest = record_digest(folder, record)
        experiment_id = _experiment(client, record["experiment"], record["tags"].get("nextlab.study", ""))
        if experiment_id not in sent:
            sent[experiment_id] = _sent_digests(client, experiment_id)
        if digest in sent[experiment_id]:
            counts["present"] += 1
            continue
        counts["sent"] += 1
        if dry_run:
            continue
        if experiment_id not in parents:
            parents[experiment_id] = parent_run_id or client.create_run(
                experiment_id, run_name=f"relog/{time.strftime('%Y%m%d-%H%M%S')}",
                tags={"nextlab.stage": "relog", "nextlab.results": ", ".join(map(str, roots))}).info.run_id
        # The invocation that sent it: run names repeat across invocations, views group by this.
        tags = {**record["tags"], "mlflow.parentRunId": parents[experiment_id], "nextlab.invocation": parents[experiment_id]}
        if not parent_run_id:
            tags["nextlab.relogged"] = "true"
        run = StageRun(client, client.create_run(experiment_id, run_name=record["name"], tags=tags).info.run_id)
        send(run, folder, record)
        run.end("FINISHED")
        sent[experiment_id].add(digest)
        _supersede(client, experiment_id, record["name"], run.run_id)
    for parent in parents.values():
        if parent != parent_run_id:
            client.set_terminated(parent, "FINISHED")
    return counts
