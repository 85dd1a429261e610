"""End to end: the smoke study through real Snakemake, MLflow and DVC, in a fresh project copy."""

from __future__ import annotations

import filecmp
import json
import shutil
import time

import pytest

from conftest import project_env, run, tool_env

pytestmark = pytest.mark.e2e

SMOKE = "params/smoke.yaml"


@pytest.fixture(scope="module")
def project(smoke_project):
    """The project copy in which the smoke study has run once through Snakemake with 2 cores."""
    return smoke_project


def test_outputs_exist(project):
    results = project["path"] / "results" / "smoke"
    for name in ("data/world.json", "data/qa.parquet", "data/stats.json", "tokenizer/tokenizer.json",
                 "tokenizer/train.npy", "tokenizer/stats.json", "models/tiny/pretrain/ckpt.pt",
                 "models/tiny/pretrain/facts.csv", "models/tiny/sft/ckpt.pt", "models/tiny/sft_confidence/ckpt.pt",
                 "models/tiny/posttrain/binary/seed1/ckpt.pt", "models/tiny/posttrain/penalized-0.75/seed1/steps.csv",
                 "evaluate/tiny/none/seed0/answers.parquet", "evaluate/tiny/summary/metrics.json",
                 "nondeterminism/tiny/float32/sdpa/threads1/logits.parquet", "nondeterminism/tiny/summary/metrics.json",
                 "mechanisms/tiny/ablation.parquet", "mechanisms/tiny/heads.parquet",
                 "mechanisms/tiny/decoding_qa.parquet", "mechanisms/tiny/decoding_bio.parquet",
                 "positions/tiny/rotary/order.parquet", "positions/tiny/order_blind/recall.parquet",
                 "positions/tiny/order_blind/ckpt.pt", "agent/tiny/episodes.parquet", "agent/tiny/ckpt.pt"):
        assert (results / name).stat().st_size > 0, name
    for name in ("report.html", "findings.json", "headline.json"):
        assert (project["path"] / "reports" / "smoke" / name).stat().st_size > 0, name
    logs = project["path"] / "logs" / "smoke"
    for stage in ("data", "tokenize", "train_tiny", "sft_tiny", "report"):
        assert (logs / "benchmarks" / f"{stage}.tsv").exists(), stage
    assert (logs / "data.log").exists()


def test_the_invariant_control_is_exactly_on_policy(project):
    """posttrain.invariant_control: binary post-trained again through the batch-invariant kernels;
    at every step its sampler's and trainer's log-probs are the same bits, and the report sets it
    beside the default run."""
    import pandas as pd

    results = project["path"] / "results" / "smoke" / "models" / "tiny"
    invariant = pd.read_csv(results / "posttrain_invariant/binary/seed1/steps.csv")
    default = pd.read_csv(results / "posttrain/binary/seed1/steps.csv")
    assert len(invariant) == len(default) > 0
    assert (invariant["sampler_trainer_kl"] == 0.0).all() and (invariant["logprob_diff_max"] == 0.0).all()
    findings = json.loads((project["path"] / "reports/smoke/findings.json").read_text())
    key = "posttrain.tiny.binary.onpolicy"
    assert findings[f"{key}.invariant.exact_steps"] == len(invariant)
    assert findings[f"{key}.invariant.logprob_diff_max"] == 0.0
    assert (project["path"] / "reports/smoke/figures/posttrain-onpolicy-tiny-binary.png").stat().st_size > 0


def test_mlflow_runs_are_grouped_and_tagged(project):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=project["env"]["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("nextlab/smoke")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    by_stage = {}
    for r in runs:
        by_stage.setdefault(r.data.tags["nextlab.stage"], []).append(r)
    assert len(by_stage["pipeline"]) == 1
    parent = by_stage["pipeline"][0]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.info.run_id != parent.info.run_id]
    assert {"data", "tokenize", "train", "sft", "posttrain", "evaluate", "nondeterminism", "mechanisms",
            "report"} <= set(by_stage)
    data_hash = json.loads((project["path"] / "results/smoke/data/stats.json").read_text())["data_hash"]
    for child in children:
        tags = child.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["nextlab.git_commit"] not in ("", "unknown")
        assert len(tags["nextlab.params_hash"]) == 16
        assert tags["nextlab.data_hash"] == data_hash
        assert child.info.status == "FINISHED"
    data_run = by_stage["data"][0]
    assert data_run.data.metrics["singleton_rate"] == pytest.approx(0.4)
    assert data_run.data.params["data.n_people"] == "40"
    tok_run = by_stage["tokenize"][0]
    assert tok_run.data.params["facts.vocab_size"] == "320"  # a fact of the job: a param, not a metric


def test_second_run_does_nothing(project):
    start = time.perf_counter()
    proc = run(["snakemake", "--cores", "2", "--config", f"params={SMOKE}"], project["path"], project["env"])
    assert "Nothing to be done" in proc.stderr + proc.stdout
    assert time.perf_counter() - start < 30


def test_unrelated_param_edit_reruns_only_what_uses_it(project):
    params = project["path"] / SMOKE
    original = params.read_text()
    params.write_text(original.replace("vocab_size: 320", "vocab_size: 330"))
    try:
        proc = run(["snakemake", "-n", "--cores", "2", "--config", f"params={SMOKE}"], project["path"],
                   project["env"])
    finally:
        params.write_text(original)
    out = proc.stdout + proc.stderr
    assert "rule tokenize:" in out
    assert "rule data:" not in out


def test_bad_params_stop_before_any_job(project):
    bad = project["path"] / "params" / "bad.yaml"
    bad.write_text("study: bad\ndata:\n  mention_mix: {1: 0.5, 2: 0.4}\n")
    proc = run(["snakemake", "--cores", "2", "--config", "params=params/bad.yaml"], project["path"],
               project["env"], check=False)
    assert proc.returncode != 0
    assert "data.mention_mix: fractions sum to 0.9, must sum to 1" in proc.stderr + proc.stdout
    assert not (project["path"] / "results" / "bad").exists()
    bad.unlink()


def test_dvc_metrics_show(project):
    proc = run(["dvc", "metrics", "show", "--json"], project["path"], project["env"])
    metrics = json.loads(proc.stdout)
    files = metrics[""]["data"]
    # only the headline findings of the studies that ran (the rest stay in the files)
    assert list(files) == ["reports/smoke/headline.json"]
    headline = files["reports/smoke/headline.json"]["data"]
    assert headline["data.singleton_rate"] == pytest.approx(0.4) and 5 <= len(headline) <= 30


def test_dvc_pull_on_a_fresh_clone(project, tmp_path):
    """The results pushed to a local remote come back, byte for byte, into a fresh clone with a
    plain `dvc pull` (exit 0: only studies that ran are stages). Committed in a copy, so the
    shared project's commit (which later jobs record) stays as it was."""
    path = tmp_path / "project"
    shutil.copytree(project["path"], path, symlinks=True)
    env = project_env(path)
    run(["dvc", "commit", "-f", "-q", "study@smoke"], path, env)
    run(["dvc", "remote", "add", "-f", "-d", "local", str(tmp_path / "remote")], path, env)
    run(["dvc", "push", "-q"], path, env)
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-q", "-m", "smoke study results"], path, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(path), str(clone)], tmp_path, env)
    pull = run(["dvc", "pull"], clone, env, check=False)
    assert pull.returncode == 0, pull.stdout + pull.stderr
    cmp = filecmp.dircmp(path / "results" / "smoke", clone / "results" / "smoke")

    def same(c: filecmp.dircmp) -> bool:
        if c.left_only or c.right_only or c.diff_files or c.funny_files:
            return False
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        return not mismatch and not errors and all(same(s) for s in c.subdirs.values())

    assert same(cmp)


def test_workflow_lints_clean_and_dry_runs(root):
    env = tool_env()
    lint = run(["snakemake", "--lint", "--config", f"params={SMOKE}"], root, env, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Congratulations, your workflow is in a good condition!" in lint.stdout + lint.stderr
    for params in ("params/default.yaml", SMOKE):
        run(["snakemake", "-n", "--cores", "2", "--config", f"params={params}"], root, env)
