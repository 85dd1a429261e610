"""Results follow the code and the data, fresh runs give the same bytes, a killed study resumes, and a
tracking server that is down costs seconds: all through real Snakemake, DVC and MLflow."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import BIN, make_project_copy, project_env, run

pytestmark = pytest.mark.e2e

SMOKE = "params/smoke.yaml"
# Files that record how fast a job ran (they differ run to run by design); everything else under
# results/ must be the same bytes in two fresh runs.
TIMING = re.compile(r"(^|/)timing\.(json|csv|parquet)$|invariant_cost")


def planned(project: dict, params: str = SMOKE) -> dict[str, int]:
    """Jobs per rule that `snakemake -n` would run now."""
    proc = run(["snakemake", "-n", "--cores", "2", "--config", f"params={params}"], project["path"], project["env"])
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "all"}


def edited(path: Path, old: str, new: str):
    """Context: the file with one edit, put back afterwards (mtime too)."""
    class Edit:
        def __enter__(self):
            self.text, self.stat = path.read_text(), path.stat()
            assert old in self.text, f"{path}: {old!r} not found"
            path.write_text(self.text.replace(old, new, 1))

        def __exit__(self, *exc):
            path.write_text(self.text)
            os.utime(path, ns=(self.stat.st_atime_ns, self.stat.st_mtime_ns))

    return Edit()


def test_rerun_matrix(smoke_project):
    """Which edit reruns which jobs (`snakemake -n` after each, on a finished smoke study)."""
    root = smoke_project["path"]
    assert planned(smoke_project) == {}
    with edited(root / "src/nextlab/qa/metrics.py", "NLL_EPS = 1e-6", "NLL_EPS = 1e-7"):
        rules = planned(smoke_project)
    assert {"evaluate", "evaluate_summary", "report"} <= set(rules)
    assert not {"data", "tokenize", "train", "sft", "sft_confidence", "posttrain", "nondeterminism"} & set(rules)
    with edited(root / "src/nextlab/report/figures/train.py", "import math", "import math  # edited"):
        assert planned(smoke_project) == {"report": 1}
    # Post-training's own code: SFT, which no longer imports it (its stage is one module), stays.
    with edited(root / "src/nextlab/posttrain/policy_gradient.py", "abstain_reward: float = 0.0",
                "abstain_reward: float = 0.5"):
        rules = planned(smoke_project)
    assert {"posttrain", "evaluate", "report"} <= set(rules)
    assert not {"data", "tokenize", "train", "sft", "sft_confidence"} & set(rules)
    with edited(root / "src/nextlab/posttrain/sft.py", "FINAL_WINDOW = 5", "FINAL_WINDOW = 6"):
        rules = planned(smoke_project)
    assert {"sft", "sft_confidence", "posttrain", "evaluate", "report"} <= set(rules)
    assert not {"data", "tokenize", "train"} & set(rules)
    with edited(root / "requirements.lock", "torch==2.13.0", "torch==2.13.0  # edited"):
        rules = planned(smoke_project)
    assert {"data", "tokenize", "train", "posttrain", "evaluate", "nondeterminism", "report"} <= set(rules)
    assert planned(smoke_project) == {}


def test_results_record_the_code_that_made_them(smoke_project):
    results = smoke_project["path"] / "results" / "smoke"
    evaluate = json.loads((results / "evaluate/tiny/binary/seed1/provenance.json").read_text())
    train = json.loads((results / "models/tiny/pretrain/provenance.json").read_text())
    for prov in (evaluate, train):
        assert len(prov["code_hash"]) == 16 and prov["git_dirty"] is False and len(prov["git_commit"]) == 40
    assert evaluate["code_hash"] != train["code_hash"] and (evaluate["stage"], train["stage"]) == ("evaluate", "train")


def test_renamed_params_file_reruns_nothing(smoke_project):
    root = smoke_project["path"]
    shutil.copy(root / SMOKE, root / "params" / "smoke copy.yaml")  # a space in the path, too
    try:
        assert planned(smoke_project, "params/smoke copy.yaml") == {}
    finally:
        (root / "params" / "smoke copy.yaml").unlink()


def _manifest(results: Path) -> dict[str, bytes]:
    return {str(p.relative_to(results)): p.read_bytes() for p in sorted(results.rglob("*"))
            if p.is_file() and not TIMING.search(str(p.relative_to(results)))}


def test_fresh_runs_give_the_same_bytes(smoke_project, tmp_path):
    """A second fresh copy of the project runs the smoke study from scratch: every results file
    but the timing files is byte-identical to the first run's."""
    other = make_project_copy(tmp_path / "again")
    run(["snakemake", "--cores", "2", "--config", f"params={SMOKE}"], other, project_env(other))
    first, second = _manifest(smoke_project["path"] / "results/smoke"), _manifest(other / "results/smoke")
    assert sorted(first) == sorted(second)
    differ = [name for name in first if first[name] != second[name]]
    assert differ == []


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_study_unlocks_resumes_and_marks_runs_killed(smoke_project, tmp_path):
    """kill -9 of a study while it trains (the live job, whose run is open): the next `make study`
    clears the stale lock with a message and resumes; the killed job's run is KILLED, the
    invocation's parent run continues and finishes."""
    from mlflow.tracking import MlflowClient

    project = tmp_path / "killed"
    shutil.copytree(smoke_project["path"], project, symlinks=True)
    env = project_env(project)
    cmd = [str(BIN / "python"), "workflow/scripts/study.py", "--config", f"params={SMOKE}",
           "--forcerun", "train", "--until", "train"]
    study = subprocess.Popen(cmd, cwd=project, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: any((project / ".snakemake/locks").glob("*")), 60, "Snakemake's lock")
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("nextlab/smoke")

    def training() -> bool:
        return bool(client.search_runs([experiment.experiment_id], "attributes.run_name = 'train/tiny' "
                                       "and attributes.status = 'RUNNING'"))

    _wait_for(training, 180, "the train job's run to open")
    os.killpg(study.pid, signal.SIGKILL)  # Snakemake and its job, as a power cut would
    study.wait()
    assert any((project / ".snakemake/locks").glob("*"))
    proc = run(cmd[:4] + ["--until", "train"], project, env)  # resume: the study command (up to train, for time)
    assert "no longer running (killed?): unlocking and resuming" in proc.stderr
    assert (project / "results/smoke/models/tiny/pretrain/ckpt.pt").stat().st_size > 0
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    trains = [r for r in runs if r.info.run_name == "train/tiny"]
    assert sorted(r.info.status for r in trains) == ["FINISHED", "FINISHED", "KILLED"]
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parents = [r for r in runs if r.data.tags.get("nextlab.stage") == "pipeline"]
    resumed = [r for r in parents if r.data.tags.get("nextlab.resumed") == "1"]
    assert len(resumed) == 1 and resumed[0].info.status == "FINISHED"


def test_tracking_server_down_costs_seconds_and_relog_sends_later(smoke_project, tmp_path):
    """A job with an unreachable tracking server keeps its results and ends within seconds
    (MLflow's default retries took ~4 minutes); `nextlab relog` sends it later, once."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = project_env(smoke_project["path"], {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"})
    out = tmp_path / "data"
    start = time.perf_counter()
    proc = run(["nextlab", "data", "--params", SMOKE, "--out", str(out)], smoke_project["path"], env, timeout=120)
    seconds = time.perf_counter() - start
    assert "this job is not tracked" in proc.stderr and (out / "stats.json").is_file() and (out / "run.json").is_file()
    print(f"nextlab data with the tracking server down: {seconds:.1f} s")
    db = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'later.db'}"}
    env = project_env(smoke_project["path"], db)
    first = run(["nextlab", "relog", "--results", str(out)], smoke_project["path"], env)
    again = run(["nextlab", "relog", "--results", str(out)], smoke_project["path"], env)
    assert "sent 1 run(s), 0 already" in first.stdout and "sent 0 run(s), 1 already" in again.stdout


LICENSES = Path("/usr/share/common-licenses")  # plain-text documents every Debian system ships


def _user_study(root: Path, name: str, mode: str) -> str:
    corpus = root / "corpora" / "licenses"
    if not corpus.exists():
        corpus.mkdir(parents=True)
        for path in sorted(LICENSES.iterdir()):
            if path.is_file() and not path.is_symlink():
                (corpus / f"{path.name}.txt").write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    text = (root / SMOKE).read_text().replace("study: smoke", f"study: {name}")
    text = text.replace("  n_unseen: 16", f"  n_unseen: 16\n  user_corpus: {{path: corpora/licenses, mode: {mode}}}")
    (root / "params" / f"{name}.yaml").write_text(text)
    return f"params/{name}.yaml"


@pytest.mark.skipif(not LICENSES.is_dir(), reason="needs Debian's /usr/share/common-licenses")
def test_user_corpus_replace_and_add(tmp_path):
    root = make_project_copy(tmp_path / "user")
    env = project_env(root)
    replace = _user_study(root, "licenses", "replace")
    proc = run(["snakemake", "--cores", "2", "--config", f"params={replace}"], root, env)
    assert "data.user_corpus.mode is 'replace'" in proc.stderr
    results = root / "results" / "licenses"
    stats = json.loads((results / "data/stats.json").read_text())
    assert stats["people"] == 0 and stats["user_documents"] > 0 and stats["bio_documents"] == 0
    metrics = json.loads((results / "models/tiny/pretrain/metrics.json").read_text())
    assert metrics["val_loss"] < metrics["train_loss"] + 5 and not (results / "models/tiny/pretrain/facts.csv").exists()
    assert not (results / "evaluate").exists() and not (results / "models/tiny/sft").exists()
    # nondeterminism on the user's own held-out text, decoded by the pretrained model
    prompts = pd.read_parquet(results / "nondeterminism/tiny/float32/sdpa/threads1/prompts.parquet")
    assert set(prompts["kind"]) == {"text"} and len(prompts) > 0
    val = (results / "data/corpus/val.jsonl").read_text()
    assert all(text.split()[0] in val for text in prompts["text"])
    nd = json.loads((results / "nondeterminism/tiny/summary/metrics.json").read_text())
    assert nd and "pretrain" in (results / "nondeterminism/tiny/float32/sdpa/threads1/provenance.json").read_text()
    report = (root / "reports/licenses/report.md").read_text()
    assert "Next-token loss while pretraining" in report and "nondeterminism" in report.lower()
    project = {"path": root, "env": env}
    assert planned(project, replace) == {}
    corpus = root / "corpora" / "licenses"
    with open(corpus / "GPL-3.txt", "a", encoding="utf-8") as f:
        f.write("\nOne more line of the user's own text.\n")
    assert {"data", "tokenize", "train", "report"} <= set(planned(project, replace))
    (corpus / "extra.txt").write_text("A new document the user added.\n", encoding="utf-8")
    assert "data" in planned(project, replace)

    add = _user_study(root, "licenses-add", "add")
    run(["snakemake", "--cores", "2", "--config", f"params={add}", "--until", "train"], root, env)
    results = root / "results" / "licenses-add"
    stats = json.loads((results / "data/stats.json").read_text())
    assert stats["people"] == 40 and stats["user_documents"] > 0 and stats["bio_documents"] > 0
    assert (results / "models/tiny/pretrain/facts.csv").is_file()


def test_a_failing_job_leaves_the_last_good_outputs(smoke_project, tmp_path):
    """Snakemake keeps a job's outputs while it reruns (`kept()`), and puts them back when it fails."""
    project = tmp_path / "failing"
    shutil.copytree(smoke_project["path"], project, symlinks=True)
    env = project_env(project)
    findings = project / "reports/smoke/findings.json"
    html = project / "reports/smoke/report.html"
    before = findings.read_bytes(), html.read_bytes()
    figure = project / "src/nextlab/report/figures/train.py"
    figure.write_text(figure.read_text().replace("    import pandas as pd\n", "    raise RuntimeError('broken figure')\n", 1))
    proc = run(["snakemake", "--cores", "2", "--config", f"params={SMOKE}"], project, env, check=False)
    assert proc.returncode != 0 and "Restored previous version" in proc.stderr + proc.stdout
    assert (findings.read_bytes(), html.read_bytes()) == before
