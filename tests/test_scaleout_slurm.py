"""Scale-out, for real: the smoke study on a one-node SLURM cluster started here (Debian's slurmctld,
slurmd, slurmdbd on MariaDB, munge; tests/slurm_cluster.py), through Snakemake's SLURM executor
plugin and `--profile workflow/profiles/slurm` with the partition and account given on the command
line as a user would. The same metrics as the local run, and every queued job in `sacct`.

Run with `make test-scaleout`; skipped where the cluster cannot start (not root, packages or the
plugin missing) unless NEXTLAB_REQUIRE_SCALEOUT=1 (CI), where that fails.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from slurm_cluster import ACCOUNT, PARTITION, missing, slurm_cluster

from conftest import make_project_copy, project_env, run

pytestmark = pytest.mark.scaleout

# The rules the Snakefile keeps local (cheap): they must not reach the queue.
LOCAL_RULES = {"all", "evaluate_summary", "nondeterminism_summary", "report"}


@pytest.fixture(scope="module")
def cluster():
    lacking = missing()
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        lacking.append("snakemake-executor-plugin-slurm")
    if lacking:
        if os.environ.get("NEXTLAB_REQUIRE_SCALEOUT") == "1":
            pytest.fail(f"the SLURM test cluster lacks {lacking}: run `make test-scaleout`, which installs them")
        pytest.skip(f"the SLURM test cluster lacks {lacking} (make test-scaleout installs them)")
    with slurm_cluster() as c:
        yield c


def _metrics(results) -> dict[str, dict]:
    return {str(p.relative_to(results)): json.loads(p.read_text()) for p in sorted(results.rglob("metrics.json"))}


def test_smoke_study_through_the_slurm_executor(cluster, smoke_project, tmp_path):
    project = make_project_copy(tmp_path / "project")
    env = project_env(project, {"SLURM_CONF": cluster["env"]["SLURM_CONF"]})
    run(["snakemake", "--profile", "workflow/profiles/slurm", "--config", "params=params/smoke.yaml",
         "--default-resources", f"slurm_partition={PARTITION}", f"slurm_account={ACCOUNT}", "mem_mb=2000",
         "runtime=30"], project, env, timeout=1200)

    got, want = _metrics(project / "results" / "smoke"), _metrics(smoke_project["path"] / "results" / "smoke")
    assert sorted(got) == sorted(want) and len(want) > 15
    for path in want:
        assert got[path] == want[path], path  # the same code, params and machine: the same numbers

    accounting = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "Comment,State"], env=cluster["env"],
                                capture_output=True, text=True, check=True).stdout.split()
    jobs = [line.split("|") for line in accounting]
    rules = {comment.removeprefix("rule_").split("_wildcards")[0] for comment, _ in jobs}
    assert all(state == "COMPLETED" for _, state in jobs), jobs
    assert {"data", "tokenize", "train", "sft", "posttrain", "evaluate", "nondeterminism", "mechanisms",
            "positions", "agent"} <= rules
    assert not rules & LOCAL_RULES
    # One queued job per job Snakemake ran outside the local rules.
    log = sorted((project / ".snakemake" / "log").glob("*.snakemake.log"))[-1].read_text()
    remote = [line for line in log.splitlines() if "has been submitted with SLURM jobid" in line]
    assert len(jobs) == len(remote)


def test_an_unreachable_controller_stops_the_study_before_any_job(tmp_path):
    """No cluster needed: a configuration whose controller port has nothing behind it."""
    import shutil
    import time

    if shutil.which("scontrol") is None:
        if os.environ.get("NEXTLAB_REQUIRE_SCALEOUT") == "1":
            pytest.fail("scontrol is missing: run `make test-scaleout`, which installs it")
        pytest.skip("SLURM's client commands are not installed")
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=gone\nSlurmctldHost=localhost\nSlurmctldPort=9\nAuthType=auth/munge\n"
                    "NodeName=localhost CPUs=1 State=UNKNOWN\nPartitionName=p Nodes=localhost Default=YES\n")
    project = make_project_copy(tmp_path / "project")
    start = time.monotonic()
    proc = run(["snakemake", "--profile", "workflow/profiles/slurm", "--config", "params=params/smoke.yaml",
                "--default-resources", "slurm_partition=p", "slurm_account=x"], project,
               project_env(project, {"SLURM_CONF": str(conf)}), check=False, timeout=300)
    assert proc.returncode != 0
    assert "the SLURM controller (slurmctld) is not reachable" in proc.stderr, proc.stderr[-2000:]
    assert time.monotonic() - start < 120
    assert not (project / "results").exists()  # stopped before any job
