"""`nextlab nondeterminism` end to end on a tiny study (in process, real MLflow on a throwaway
sqlite file): the job's tables, metrics and environment record, the summary's figures, the
controls, and the bad inputs it refuses before loading a model."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import yaml

from nextlab.cli import main
from nextlab.config.nondeterminism import FIGURES, TABLES

PARAMS = {
    "study": "nd",
    "seed": 5,
    "data": {"n_people": 40, "values_per_attribute": 6, "mention_mix": {1: 0.5, 4: 0.5}, "n_unseen": 16},
    "tokenizer": {"vocab_size": 300},
    "models": {"tiny": {"n_layer": 1, "n_head": 2, "d_model": 32, "block_size": 96}},
    "train": {"steps": 12, "batch_size": 8, "warmup_steps": 2, "eval_every": 12, "eval_batches": 1,
              "checkpoint_every": 12},
    "device": "cpu",
    "nondeterminism": {"checkpoint": "pretrain", "batch_sizes": [1, 2, 5], "qa_prompts": 3, "bio_prompts": 2, "unseen_prompts": 2,
                       "max_new_tokens": 4, "repeat_prompts": 2, "repeat_requests": 3},
}


def cli(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("nondeterminism")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.chdir(root)
    before = torch.get_num_threads()
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    r = root / "results" / "nd"
    d = dict(root=root, params=params, data=r / "data", tok=r / "tokenizer",
             ckpt=r / "models" / "tiny" / "pretrain" / "ckpt.pt", out=r / "nondeterminism" / "tiny")
    assert cli("data", "--params", params, "--out", d["data"]) == 0
    assert cli("tokenize", "--params", params, "--data", d["data"], "--out", d["tok"]) == 0
    assert cli("train", "--params", params, "--threads", 1, "--model", "tiny", "--tokens", d["tok"],
               "--data", d["data"], "--out", d["ckpt"].parent) == 0
    yield d
    torch.set_num_threads(before)
    mp.undo()


def job(d, dtype="float32", attention="sdpa", params=None, **extra) -> int:
    out = d["out"] / dtype / attention / "threads1"
    args = ["nondeterminism", "--params", params or d["params"], "--threads", 1, "--model", "tiny",
            "--dtype", dtype, "--attention", attention, "--ckpt", d["ckpt"], "--data", d["data"],
            "--tokenizer", d["tok"], "--out", out]
    for key, value in extra.items():
        args[args.index(f"--{key}") + 1] = value
    return cli(*args)


@pytest.fixture(scope="module")
def jobs(study):
    d = study
    assert job(d, "float32", "sdpa") == 0
    assert job(d, "bfloat16", "explicit") == 0
    folders = [d["out"] / "float32" / "sdpa" / "threads1", d["out"] / "bfloat16" / "explicit" / "threads1"]
    assert cli("nondeterminism", "--params", d["params"], "--model", "tiny", "--summary", "--jobs", *folders,
               "--out", d["out"] / "summary") == 0
    return folders


def test_job_writes_its_tables_metrics_and_environment(jobs):
    fp32 = jobs[0]
    for name in TABLES:
        table = pd.read_parquet(fp32 / f"{name}.parquet")
        assert {"model", "dtype", "attention", "threads"} <= set(table.columns), name
    logits = pd.read_parquet(fp32 / "logits.parquet")
    first = logits[logits["run"] == "first"]
    # every target x path x measure x batch size > 1 x padding side, plus batch 1's prefill vs decode
    assert len(first[first["batch_size"] > 1]) == 7 * 2 * 2 * 2 * 3  # 3 QA + 2 bio + 2 never-seen targets
    comp = pd.read_parquet(fp32 / "completions.parquet")
    assert set(comp["kind"]) == {"qa", "bio", "unseen"} and comp.loc[comp["kind"] == "qa", "grade"].notna().all()
    m = json.loads((fp32 / "metrics.json").read_text())
    # The controls: the same batches twice, and the batch-invariant mode, show nothing.
    assert m["control_repeat_not_equal"] == 0
    assert m["control_invariant_not_equal"] == 0 and m["control_invariant_flips"] == 0
    assert m["control_invariant_differ"] == 0 and m["control_invariant_unique_max"] == 1
    assert m["control_invariant_prefill_vs_decode_not_equal"] == 0
    timing = json.loads((fp32 / "timing.json").read_text())  # speed lives apart from the measures
    for key in ("decode_not_equal_share_b5", "free_differ_rate_b2", "unique_completions_max"):
        assert m[key] is not None and m[key] >= 0, key
    for key in ("tokens_per_s_invariant_b5", "invariant_slowdown_b2"):
        assert timing[key] is not None and timing[key] >= 0 and key not in m, key
    env = json.loads((fp32 / "env.json").read_text())
    assert env["threads"] == 1 and env["dtype"] == "float32" and env["torch"] == torch.__version__
    assert env["blas"] and env["sdpa_backend_masked"] and "cpu_flags" in env
    assert env["bf16_kernels"] and env["matmul_kernel"]  # the kernel path, whatever this CPU has
    # Power and bounds beside every rate (a run where nothing changed still says how little).
    assert m["free_completions_b2"] == 7 * 3 and m["free_differ_upper_b2"] > 0
    assert m["free_power_b2"] == pytest.approx(1 - 0.99 ** 21)
    # The invariant mode runs once per dtype (it has its own attention): only the first path's job.
    bf16 = json.loads((jobs[1] / "metrics.json").read_text())
    assert set(bf16) == set(m) and bf16["control_invariant_not_equal"] is None


def test_summary_draws_every_figure_and_flattens_metrics(study, jobs):
    out = study["out"] / "summary"
    for name in FIGURES:
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000, name
    flat = json.loads((out / "metrics.json").read_text())
    assert flat["float32.sdpa.threads1.control_repeat_not_equal"] == 0
    assert "bfloat16.explicit.threads1.decode_flip_rate" in flat


def test_runs_are_tracked_by_factor(study, jobs):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{study['root'] / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("nextlab/nd")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    run = runs["nondeterminism/tiny/float32/sdpa/threads1"]
    assert run.data.tags["nextlab.dtype"] == "float32" and run.data.tags["nextlab.attention"] == "sdpa"
    assert run.data.tags["nextlab.threads"] == "1" and run.info.status == "FINISHED"
    data_hash = json.loads((study["data"] / "stats.json").read_text())["data_hash"]
    assert run.data.tags["nextlab.data_hash"] == data_hash
    assert "control_repeat_not_equal" in run.data.metrics
    history = client.get_metric_history(run.info.run_id, "by_batch_size/decode_flip_rate")
    assert sorted(h.step for h in history) == [2, 5]  # per batch size, the batch size as the step
    assert runs["nondeterminism/tiny/summary"].data.tags["nextlab.data_hash"] == data_hash


def _params(d, **nd):
    path = d["root"] / f"bad_{abs(hash(json.dumps(nd, sort_keys=True)))}.yaml"
    params = json.loads(json.dumps(PARAMS))
    params["nondeterminism"].update(nd)
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("nd,message", [
    ({"batch_sizes": [0, 2]}, "nondeterminism.batch_sizes: batch sizes must be >= 1"),
    ({"batch_sizes": [1, 500]}, "batch_sizes holds 500, but .* gives only"),
    ({"qa_prompts": 10_000}, "qa_prompts=10000, but .* has only"),
    ({"repeat_prompts": 9}, "repeat_prompts=9 exceeds the 7 target prompts"),
    ({"max_new_tokens": 90, "stop_at_eos": True}, "past the context .* needs stop_at_eos false"),
    ({"qa_prompts": 0, "bio_prompts": 0, "unseen_prompts": 0}, "nothing to decode"),
    ({"dtypes": ["float8"]}, "nondeterminism.dtypes.0: got 'float8'"),
])
def test_bad_input_is_refused_with_a_clear_message(study, capsys, nd, message):
    import re

    assert job(study, params=_params(study, **nd), out=study["root"] / "refused") == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (study["root"] / "refused").exists()


def test_unknown_dtype_or_attention_path_is_refused(study, capsys):
    with pytest.raises(SystemExit) as exit_:
        job(study, dtype="float8")
    assert exit_.value.code == 2 and "invalid choice: 'float8'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        job(study, attention="flash")
    assert "invalid choice: 'flash'" in capsys.readouterr().err


def test_a_dtype_the_device_cannot_run_is_refused(study, capsys, monkeypatch):
    from nextlab.nondeterminism import stage

    monkeypatch.setattr(stage, "dtype_runs", lambda device, dtype: "no float16 kernels here")
    assert job(study, dtype="float16", out=study["root"] / "refused") == 2
    err = capsys.readouterr().err
    assert "dtype float16 cannot run on cpu (no float16 kernels here)" in err


def test_dtype_probe_names_what_fails():
    from nextlab.nondeterminism.env import dtype_runs

    assert dtype_runs(torch.device("cpu"), torch.float32) is None
    assert dtype_runs(torch.device("cpu"), torch.float8_e4m3fn)  # no float8 layer norm on the CPU
