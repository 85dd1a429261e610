"""Shared fixtures: the smoke params, and a throwaway copy of the project for end-to-end runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# What a copy of the project for an end-to-end run leaves out: generated and local files.
_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "results", "logs", "mlruns", "mlartifacts", "mlflow.db", ".snakemake",
    "__pycache__", "*.egg-info", ".pytest_cache", "dvc-remote", "tmp", "cache",
)


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the Makefile gives the project's commands."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        DVC_NO_ANALYTICS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONHASHSEED="0",
        GIT_AUTHOR_NAME="nextlab-tests",
        GIT_AUTHOR_EMAIL="tests@nextlab.invalid",
        GIT_COMMITTER_NAME="nextlab-tests",
        GIT_COMMITTER_EMAIL="tests@nextlab.invalid",
        # Fixed dates: two copies of the same files get the same commit, so the provenance every
        # result records is the same and two fresh runs can be compared byte for byte. Git's raw
        # format (epoch seconds, zone), which DVC's own Git library (dulwich) also reads.
        GIT_AUTHOR_DATE="1767225600 +0000",
        GIT_COMMITTER_DATE="1767225600 +0000",
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(extra or {})
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env or tool_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}"
            f"\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc


def project_env(dest: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a project copy: its own source first on the path (the virtual
    environment's editable install points at this checkout), its own MLflow database."""
    return tool_env({"PYTHONPATH": str(dest / "src"), "MLFLOW_TRACKING_URI": f"sqlite:///{dest / 'mlflow.db'}",
                     **(extra or {})})


def make_project_copy(dest: Path) -> Path:
    """A git repository holding the project's files (what a fresh clone has), for DVC and Snakemake."""
    shutil.copytree(ROOT, dest, ignore=_IGNORE)
    run(["git", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-q", "-m", "test copy"], dest)
    return dest


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def smoke_params() -> Path:
    return ROOT / "params" / "smoke.yaml"


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory) -> dict:
    """A project copy in which the smoke study has run through Snakemake (2 cores), made once per
    test session and shared by the end-to-end test files (test_pipeline, test_report, test_browser);
    a test that edits it puts it back.

    NEXTLAB_SMOKE_PROJECT=<dir> reuses a copy where the smoke study already ran (a git repository
    made by `conftest.make_project_copy`), to iterate on these tests without rerunning the study.
    """
    if os.environ.get("NEXTLAB_SMOKE_PROJECT"):
        dest = Path(os.environ["NEXTLAB_SMOKE_PROJECT"]).resolve()
        assert (dest / "results" / "smoke").is_dir(), f"{dest}: the smoke study has not run there"
        return {"path": dest, "env": project_env(dest), "seconds": None}
    dest = make_project_copy(tmp_path_factory.mktemp("smoke-study") / "project")
    env = project_env(dest)
    start = time.perf_counter()
    run(["snakemake", "--cores", "2", "--config", "params=params/smoke.yaml"], dest, env)
    seconds = time.perf_counter() - start
    # what `make study STUDY=smoke` does before `dvc repro`: DVC's stage loop now knows the study
    run([str(BIN / "python"), "workflow/scripts/register_study.py", "smoke"], dest, env)
    return {"path": dest, "env": env, "seconds": seconds}
