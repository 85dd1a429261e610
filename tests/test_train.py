"""Training: overfitting, the stage's files, resume after kill -9, bad input, no CUDA on a CPU."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nextlab.cli import main
from nextlab.config import TrainParams, load_study
from nextlab.errors import InputFileError
from nextlab.model import GPT, GPTConfig
from nextlab.model.checkpoint import load_model, model_from_checkpoint, read_checkpoint, save_checkpoint
from nextlab.train.batches import TokenData
from nextlab.train.loop import new_state, train

from conftest import ROOT, tool_env

torch.set_num_threads(1)

TINY_MODEL = {"n_layer": 1, "n_head": 2, "d_model": 32, "block_size": 64}
TINY_TRAIN = {"steps": 12, "batch_size": 4, "warmup_steps": 2, "eval_every": 6, "eval_batches": 1,
              "checkpoint_every": 4, "cpu_peak_flops": 1.0e10}


@pytest.fixture(scope="module")
def smoke_inputs(tmp_path_factory) -> Path:
    """The smoke study's real data and tokenizer folders (built once, in-process, ~2 s)."""
    from nextlab.data.stage import run as run_data
    from nextlab.tokenizer.stage import Inputs as TokenizeInputs
    from nextlab.tokenizer.stage import run as run_tokenize

    root = tmp_path_factory.mktemp("smoke")
    study = load_study(ROOT / "params" / "smoke.yaml")
    run_data(study, None, root / "data")
    run_tokenize(study, TokenizeInputs(root / "data" / "corpus"), root / "tokenizer")
    return root


def write_params(path: Path, model: dict | None = None, train_over: dict | None = None,
                 tracking: bool = False, device: str | None = None) -> Path:
    raw = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    raw["models"] = {"tiny": {**TINY_MODEL, **(model or {})}}
    raw["train"] = {**TINY_TRAIN, **(train_over or {})}
    raw["tracking"] = {"enabled": tracking}
    if device is not None:
        raw["device"] = device
    path.write_text(yaml.safe_dump(raw))
    return path


def train_args(params: Path, inputs: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--params", str(params), "--threads", "1", "--model", "tiny",
            "--tokens", str(inputs / "tokenizer"), "--out", str(out), *extra]


def test_tiny_model_overfits_tiny_corpus(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 32, 60).astype(np.uint16)
    data = TokenData(tokens, "toy")
    params = TrainParams(steps=150, batch_size=8, lr=1e-2, warmup_steps=10, eval_every=50, checkpoint_every=1000)
    state = new_state(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, d_model=32), params, 0,
                      torch.device("cpu"))
    out = train(state, data, data, params, checkpoint_path=tmp_path / "last.pt", tokenizer_hash="x", seed=0,
                progress=False)
    assert abs(out.curve[0]["val_loss"] - math.log(32)) < 0.1  # step 0: the loss at initialisation
    assert out.train_loss < 0.3 and out.val_loss < 0.3
    assert [r["step"] for r in out.curve] == list(range(151))


def test_train_stage_writes_its_files(tmp_path, smoke_inputs):
    params = write_params(tmp_path / "p.yaml")
    out = tmp_path / "out"
    assert main(train_args(params, smoke_inputs, out, "--data", str(smoke_inputs / "data"))) == 0
    assert {p.name for p in out.iterdir()} >= {"ckpt.pt", "metrics.json", "curve.csv", "loss.png", "facts.csv"}
    assert not (out / "last.pt").exists()
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    timing = json.loads((out / "timing.json").read_text())  # speed lives apart from what was computed
    assert metrics["steps"] == 12 and metrics["val_perplexity"] == pytest.approx(math.exp(metrics["val_loss"]))
    assert timing["tokens_per_s"] > 0 and timing["peak_flops"] == 1.0e10  # the param, not a probe
    assert timing["mfu"] == pytest.approx(metrics["flops_per_token"] * timing["tokens_per_s"] / 1.0e10)
    assert not {"tokens_per_s", "mfu", "train_seconds"} & set(metrics)
    assert {"bio_acc_k1", "bio_acc_k4", "qa_acc_k1", "qa_acc_k4"} <= set(metrics)
    curve = (out / "curve.csv").read_text().splitlines()
    assert curve[0] == "step,lr,train_loss,val_loss" and len(curve) == 1 + 13
    per_step = (out / "timing.csv").read_text().splitlines()
    assert per_step[0] == "step,tokens_per_s" and len(per_step) == 1 + 13
    facts = (out / "facts.csv").read_text().splitlines()
    assert facts[0] == "mentions,bio_facts,bio_acc,qa_questions,qa_acc" and len(facts) == 3
    model, ckpt = load_model(out / "ckpt.pt", "cpu")
    assert ckpt["step"] == 12 and not model.training
    assert ckpt["tokenizer_hash"] == json.loads((smoke_inputs / "tokenizer" / "stats.json").read_text())["tokenizer_hash"]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


def test_resume_after_kill_9_is_bitwise_exact(tmp_path, smoke_inputs):
    params = write_params(tmp_path / "p.yaml", train_over={"steps": 300, "checkpoint_every": 25, "eval_every": 100})
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(train_args(params, smoke_inputs, straight)) == 0

    cmd = [str(Path(sys.executable).parent / "nextlab"), *train_args(params, smoke_inputs, resumed)]
    proc = subprocess.Popen(cmd, env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (resumed / "last.pt").exists():
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.time() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (resumed / "ckpt.pt").exists()
    interrupted_at = read_checkpoint(resumed / "last.pt")["step"]
    assert 0 < interrupted_at < 300

    assert main(train_args(params, smoke_inputs, resumed)) == 0
    a, b = _weights(straight / "ckpt.pt"), _weights(resumed / "ckpt.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (straight / "curve.csv").read_text().count("\n") == (resumed / "curve.csv").read_text().count("\n")


def _expect_error(capsys, args: list[str], *fragments: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, err


def test_bad_inputs_fail_before_training(tmp_path, smoke_inputs, capsys):
    out = tmp_path / "out"
    # d_model not divisible by heads: the params schema refuses it
    bad = write_params(tmp_path / "bad.yaml", model={"d_model": 30, "n_head": 4})
    _expect_error(capsys, train_args(bad, smoke_inputs, out), "models.tiny", "not divisible by n_head=4")
    # a block size larger than the data
    big = write_params(tmp_path / "big.yaml", model={"block_size": 65536})
    _expect_error(capsys, train_args(big, smoke_inputs, out), "train.npy", "fewer than block_size + 1")
    # a missing token file
    params = write_params(tmp_path / "p.yaml")
    partial = tmp_path / "partial"
    (partial / "tokenizer").mkdir(parents=True)
    (partial / "tokenizer" / "tokenizer.json").write_bytes((smoke_inputs / "tokenizer" / "tokenizer.json").read_bytes())
    _expect_error(capsys, train_args(params, partial, out), "train.npy: token file not found")
    # an unknown model name
    _expect_error(capsys, [*train_args(params, smoke_inputs, out)[:6], "huge", *train_args(params, smoke_inputs, out)[7:]],
                  "models.huge: no such model")
    assert not out.exists()


def test_bad_resume_checkpoints_are_refused(tmp_path, smoke_inputs, capsys):
    params = write_params(tmp_path / "p.yaml")
    out = tmp_path / "out"
    assert main(train_args(params, smoke_inputs, out)) == 0
    model, ckpt = load_model(out / "ckpt.pt")
    last = out / "last.pt"

    # from another tokenizer
    save_checkpoint(last, model, tokenizer_hash="0000feedbeef", step=4, optimizer=None, rng=ckpt["rng"],
                    train_config=ckpt["train_config"])
    _expect_error(capsys, train_args(params, smoke_inputs, out), "last.pt", "tokenizer differs", "--fresh")
    # from another model config
    other = write_params(tmp_path / "other.yaml", model={"n_layer": 2})
    save_checkpoint(last, model, tokenizer_hash=ckpt["tokenizer_hash"], step=4, rng=ckpt["rng"],
                    train_config=ckpt["train_config"])
    _expect_error(capsys, train_args(other, smoke_inputs, out), "model_config differs", "n_layer: 1 -> 2")
    # from other training params
    longer = write_params(tmp_path / "longer.yaml", train_over={"steps": 40})
    _expect_error(capsys, train_args(longer, smoke_inputs, out), "train_config differs", "steps: 12 -> 40")
    # corrupt: truncated
    data = (out / "ckpt.pt").read_bytes()
    last.write_bytes(data[: len(data) // 2])
    _expect_error(capsys, train_args(params, smoke_inputs, out), "last.pt: not a readable nextlab checkpoint")
    # --fresh starts over instead
    assert main(train_args(params, smoke_inputs, out, "--fresh")) == 0
    assert not last.exists()


def test_model_from_checkpoint_draws_the_init_and_applies_overrides(tmp_path):
    config = GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, d_model=16)
    save_checkpoint(tmp_path / "ckpt.pt", GPT(config), tokenizer_hash="ab12")
    ckpt = read_checkpoint(tmp_path / "ckpt.pt")
    torch.manual_seed(5)
    model = model_from_checkpoint(ckpt, "cpu", dtype=torch.float64, attention="explicit")
    after_load = torch.rand(3)
    torch.manual_seed(5)
    GPT(config)
    # The overwritten initialisation still draws from the global RNG: what a stage samples after
    # loading is what it sampled when every stage built its model by hand.
    assert torch.equal(after_load, torch.rand(3))
    assert model.config.attention == "explicit" and not model.training
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert all(torch.equal(p, w.double()) for p, w in zip(model.state_dict().values(), ckpt["model"].values()))
    loaded, _ = load_model(tmp_path / "ckpt.pt")
    assert all(torch.equal(p, w) for p, w in zip(loaded.state_dict().values(), ckpt["model"].values()))


def test_checkpoint_reader_refuses_foreign_files(tmp_path):
    with pytest.raises(InputFileError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "none.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(InputFileError, match="empty"):
        read_checkpoint(tmp_path / "empty.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(InputFileError, match="not a readable nextlab checkpoint"):
        read_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(InputFileError, match="not a nextlab checkpoint"):
        read_checkpoint(tmp_path / "foreign.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"format": "nextlab-checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(InputFileError, match="not a readable nextlab checkpoint"):
        read_checkpoint(tmp_path / "evil.pt")


class CudaCalled(AssertionError):
    pass


def _forbid_cuda(monkeypatch, allow_is_available: bool) -> None:
    def forbidden(name):
        def fail(*args, **kwargs):
            raise CudaCalled(f"torch.cuda.{name} was called on a CPU-only run")
        return fail

    names = ["_lazy_init", "init", "synchronize", "current_device", "device_count", "get_device_name",
             "get_rng_state", "set_rng_state", "get_rng_state_all", "set_rng_state_all",
             "max_memory_allocated", "reset_peak_memory_stats", "memory_allocated", "empty_cache"]
    for name in names:
        monkeypatch.setattr(torch.cuda, name, forbidden(name))
    if allow_is_available:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU
    else:
        monkeypatch.setattr(torch.cuda, "is_available", forbidden("is_available"))


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_no_cuda_call_on_a_cpu_only_machine(tmp_path, smoke_inputs, monkeypatch, device, capsys):
    _forbid_cuda(monkeypatch, allow_is_available=device == "auto")
    params = write_params(tmp_path / "p.yaml", train_over={"steps": 6, "checkpoint_every": 3}, device=device)
    out = tmp_path / "out"
    assert main(train_args(params, smoke_inputs, out, "--data", str(smoke_inputs / "data"))) == 0
    assert main(["sample", "--ckpt", str(out / "ckpt.pt"), "--tokenizer", str(smoke_inputs / "tokenizer" / "tokenizer.json"),
                 "--device", device, "--prompt", "Ada", "--max-new-tokens", "5", "--json"]) == 0
    assert '"completion"' in capsys.readouterr().out


def test_sample_cli(tmp_path, smoke_inputs, capsys):
    params = write_params(tmp_path / "p.yaml")
    out = tmp_path / "out"
    assert main(train_args(params, smoke_inputs, out)) == 0
    capsys.readouterr()
    tok = str(smoke_inputs / "tokenizer" / "tokenizer.json")
    args = ["sample", "--ckpt", str(out / "ckpt.pt"), "--tokenizer", tok, "--prompt", "Who", "--prompt",
            "In which city", "--question", "--num-samples", "2", "--max-new-tokens", "6", "--seed", "3", "--json"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == lines  # seeded
    _expect_error(capsys, ["sample", "--ckpt", str(tmp_path / "none.pt"), "--tokenizer", tok], "checkpoint not found")


def test_training_run_is_logged_to_mlflow(tmp_path, smoke_inputs, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)  # tracking looks for logs/<study>/ relative to the working dir
    params = write_params(tmp_path / "p.yaml", tracking=True)
    assert main(train_args(params, smoke_inputs, tmp_path / "out")) == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("nextlab/smoke")
    runs = client.search_runs([experiment.experiment_id], "attributes.run_name = 'train/tiny'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["nextlab.model"] == "tiny"
    # MLflow names group the keys (`nextlab.tracking.metric_name`): losses, speed, facts as params
    assert len(client.get_metric_history(run.info.run_id, "loss/train_loss")) == 12
    assert "loss/val_perplexity" in run.data.metrics and "time/mfu" in run.data.metrics
    assert run.data.params["facts.params"] and "params" not in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"loss.png", "metrics.json", "curve.csv", "model"} <= artifacts


def test_logging_in_windows_changes_no_number(tmp_path):
    """The GPU path reads losses once per window of steps; on the CPU it must give the same curve
    and weights as one step per window (only `tokens_per_s`, a window average, differs)."""
    tokens = np.random.default_rng(1).integers(0, 32, 400).astype(np.uint16)
    data = TokenData(tokens, "toy")
    params = TrainParams(steps=23, batch_size=4, lr=1e-2, warmup_steps=3, eval_every=7, checkpoint_every=11)
    config = GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, d_model=32)
    outcomes, weights = [], []
    for window in (1, 5):
        state = new_state(config, params, 0, torch.device("cpu"))
        out = train(state, data, data, params, checkpoint_path=tmp_path / f"last{window}.pt", tokenizer_hash="x",
                    seed=0, progress=False, log_window=window)
        outcomes.append([{k: r[k] for k in ("step", "lr", "train_loss", "val_loss")} for r in out.curve])
        weights.append(state.model.state_dict())
    assert outcomes[0] == outcomes[1] and [r["step"] for r in outcomes[0]] == list(range(24))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
