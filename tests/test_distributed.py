"""Data-parallel pretraining under a real torchrun (2 CPU processes, gloo): the same loss curve as
one process with the same global batch, rank 0 alone writing, and resume after kill -9."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import smoke_inputs, train_args, write_params  # noqa: F401  (the fixture)

from nextlab.cli import main
from nextlab.config import validate_study
from nextlab.errors import ParamsError
from nextlab.model.checkpoint import read_checkpoint

from conftest import tool_env

TORCHRUN = Path(sys.executable).parent / "torchrun"
# Two processes each sum half the batch; the all-reduce adds the halves in another order than one
# process's matmul does, so curves agree to float rounding, not bitwise.
LOSS_RTOL = 1e-4


def _torchrun(params: Path, inputs: Path, out: Path) -> list[str]:
    return [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "nextlab",
            *train_args(params, inputs, out)]


def _curve(path: Path) -> dict[str, np.ndarray]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {key: np.array([float(r[key]) if r[key] else np.nan for r in rows]) for key in ("train_loss", "val_loss")}


def _env() -> dict[str, str]:
    return tool_env({"OMP_NUM_THREADS": "1"})


def test_two_processes_follow_the_single_process_curve(tmp_path, smoke_inputs):  # noqa: F811
    params = write_params(tmp_path / "p.yaml", train_over={"steps": 12, "batch_size": 8, "processes": 2,
                                                          "checkpoint_every": 100})
    single, double = tmp_path / "single", tmp_path / "double"
    assert main(train_args(params, smoke_inputs, single)) == 0  # one process, the same global batch of 8
    proc = subprocess.run(_torchrun(params, smoke_inputs, double), env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _curve(single / "curve.csv"), _curve(double / "curve.csv")
    for key in a:
        assert np.allclose(a[key], b[key], rtol=LOSS_RTOL, equal_nan=True), (key, a[key], b[key])
    wa, wb = read_checkpoint(single / "ckpt.pt")["model"], read_checkpoint(double / "ckpt.pt")["model"]
    assert all(torch.allclose(wa[k], wb[k], atol=1e-4) for k in wa)
    # Rank 0 wrote every file once; no stray checkpoint of another rank.
    assert sorted(p.name for p in double.iterdir() if p.suffix == ".pt") == ["ckpt.pt"]
    assert (double / "metrics.json").read_text().count('"processes": 2') == 1


def test_resume_after_kill_9_under_torchrun(tmp_path, smoke_inputs):  # noqa: F811
    params = write_params(tmp_path / "p.yaml", train_over={"steps": 200, "batch_size": 8, "processes": 2,
                                                          "checkpoint_every": 25, "eval_every": 100})
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    proc = subprocess.run(_torchrun(params, smoke_inputs, straight), env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = subprocess.Popen(_torchrun(params, smoke_inputs, resumed), env=_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not (resumed / "last.pt").exists():
            assert job.poll() is None, "training ended before its first checkpoint"
            assert time.time() < deadline
            time.sleep(0.01)
        os.killpg(job.pid, signal.SIGKILL)  # torchrun and both workers
    finally:
        job.wait()
    assert not (resumed / "ckpt.pt").exists()
    assert 0 < read_checkpoint(resumed / "last.pt")["step"] < 200
    proc = subprocess.run(_torchrun(params, smoke_inputs, resumed), env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = read_checkpoint(straight / "ckpt.pt")["model"], read_checkpoint(resumed / "ckpt.pt")["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert not (resumed / "last.pt").exists()


def test_a_batch_that_does_not_split_is_refused():
    with pytest.raises(ParamsError, match="batch_size=5 does not split over processes=2"):
        validate_study({"train": {"batch_size": 5, "processes": 2}})


def test_a_dying_rank_stops_the_job_with_a_message_and_keeps_the_checkpoint(tmp_path, smoke_inputs):  # noqa: F811
    params = write_params(tmp_path / "p.yaml", train_over={"steps": 5000, "batch_size": 8, "processes": 2,
                                                          "checkpoint_every": 25, "eval_every": 1000})
    out = tmp_path / "out"
    job = subprocess.Popen(_torchrun(params, smoke_inputs, out), env=_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not (out / "last.pt").exists():
            assert job.poll() is None and time.time() < deadline
            time.sleep(0.05)
        workers = subprocess.run(["pgrep", "-P", str(job.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) == 2, workers
        os.kill(int(workers[-1]), signal.SIGKILL)  # one rank dies mid-training
        output, _ = job.communicate(timeout=120)  # the other is stopped, not left waiting on it
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    assert job.returncode != 0
    assert "ChildFailedError" in output and "Signal 9 (SIGKILL)" in output, output[-2000:]
    assert 0 < read_checkpoint(out / "last.pt")["step"] < 5000 and not (out / "ckpt.pt").exists()
