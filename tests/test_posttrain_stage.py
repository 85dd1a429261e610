"""SFT, post-training under every scheme and evaluation, end to end on a tiny study through the
CLI (in process, real MLflow on a throwaway sqlite file), and the bad inputs each stage refuses."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
import yaml

from nextlab.cli import main
from nextlab.posttrain.sft import IGNORE, Example, collate

SCHEMES = ["binary", "penalized-0.75", "calibrated"]

PARAMS = {
    "study": "pt",
    "seed": 3,
    "data": {"n_people": 40, "values_per_attribute": 6, "mention_mix": {1: 0.5, 4: 0.5}, "n_unseen": 16},
    "tokenizer": {"vocab_size": 300},
    "models": {"tiny": {"n_layer": 1, "n_head": 2, "d_model": 32, "block_size": 64}},
    "train": {"steps": 20, "batch_size": 8, "warmup_steps": 2, "eval_every": 10, "eval_batches": 1,
              "checkpoint_every": 20},
    "device": "cpu",
    "sft": {"steps": 5, "batch_size": 8, "warmup_steps": 1, "confidence_steps": 2},
    "posttrain": {"schemes": ["none", *SCHEMES], "seeds": [1], "steps": 2, "questions_per_step": 4,
                  "group_size": 2, "max_answer_tokens": 6, "decision_steps": 3},
    "evaluate": {"bootstrap_samples": 20, "max_answer_tokens": 6},
}


def cli(*args: str) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("posttrain")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.chdir(root)  # logs/ (MLflow invocation file) stays in the throwaway folder
    torch.set_num_threads(1)
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    r = root / "results" / "pt"
    d = dict(params=params, root=root, data=r / "data", tok=r / "tokenizer", models=r / "models" / "tiny",
             eval=r / "evaluate" / "tiny")
    assert cli("data", "--params", params, "--out", d["data"]) == 0
    assert cli("tokenize", "--params", params, "--data", d["data"], "--out", d["tok"]) == 0
    assert cli("train", "--params", params, "--model", "tiny", "--tokens", d["tok"], "--data", d["data"],
               "--out", d["models"] / "pretrain") == 0
    yield d
    mp.undo()


def common(d):
    return ["--params", d["params"], "--threads", 1, "--model", "tiny", "--data", d["data"], "--tokenizer", d["tok"]]


@pytest.fixture(scope="module")
def pipeline(study):
    d = study
    assert cli("sft", *common(d), "--init", d["models"] / "pretrain" / "ckpt.pt", "--out", d["models"] / "sft") == 0
    assert cli("sft", "--confidence", *common(d), "--init", d["models"] / "sft" / "ckpt.pt",
               "--out", d["models"] / "sft_confidence") == 0
    for scheme in SCHEMES:
        start = "sft_confidence" if scheme == "calibrated" else "sft"
        assert cli("posttrain", *common(d), "--scheme", scheme, "--seed", 1, "--init", d["models"] / start / "ckpt.pt",
                   "--out", d["models"] / "posttrain" / scheme / "seed1") == 0
    runs = [("none", 0, d["models"] / "sft" / "ckpt.pt")] + [
        (s, 1, d["models"] / "posttrain" / s / "seed1" / "ckpt.pt") for s in SCHEMES]
    for scheme, seed, ckpt in runs:
        assert cli("evaluate", *common(d), "--scheme", scheme, "--seed", seed, "--ckpt", ckpt,
                   "--out", d["eval"] / scheme / f"seed{seed}") == 0
    answers = [d["eval"] / s / f"seed{k}" / "answers.parquet" for s, k, _ in runs]
    assert cli("evaluate", "--params", d["params"], "--summary", "--answers", *answers, "--data", d["data"],
               "--out", d["eval"] / "summary") == 0
    return d


def test_sft_and_posttrain_outputs(pipeline):
    d = pipeline
    sft = json.loads((d["models"] / "sft" / "metrics.json").read_text())
    assert sft["steps"] == 5 and sft["examples"] > 0
    keys = None
    for scheme in SCHEMES:
        out = d["models"] / "posttrain" / scheme / "seed1"
        steps = pd.read_csv(out / "steps.csv")
        assert len(steps) == 2
        assert {"reward", "answer_rate", "abstain_rate", "kl", "abstain_rate_seen", "abstain_rate_unseen"} <= set(steps)
        metrics = json.loads((out / "metrics.json").read_text())
        keys = keys or set(metrics)
        assert set(metrics) == keys  # the same keys for every scheme
        ckpt = torch.load(out / "ckpt.pt", weights_only=True)
        assert ckpt["extra"]["scheme"] == scheme and ckpt["extra"]["seed"] == 1
        # the answer-or-abstain phase ran before policy gradient where the scheme has one
        phase = scheme != "calibrated"
        assert metrics["decision_steps"] == (3 if phase else 0)
        if phase:
            assert metrics["decision_answer_targets"] + metrics["decision_abstain_targets"] == metrics["decision_questions"] > 0
            share = metrics["decision_abstain_draw_share"]
            assert (share == 0.0) if scheme == "binary" else (0.0 < share < 1.0)
    conf = json.loads((d["models"] / "sft_confidence" / "metrics.json").read_text())
    assert conf["examples"] > 0 and 0 <= conf["stated_format_rate"] <= 1
    assert torch.load(d["models"] / "sft_confidence" / "ckpt.pt", weights_only=True)["extra"]["stage"] == "sft_confidence"


def test_evaluate_outputs(pipeline):
    d = pipeline
    keys = None
    for scheme, seed in [("none", 0)] + [(s, 1) for s in SCHEMES]:
        out = d["eval"] / scheme / f"seed{seed}"
        answers = pd.read_parquet(out / "answers.parquet")
        for col in ("question_id", "person_id", "attribute", "mentions", "split", "seen", "gold", "answer", "grade",
                    "confidence", "cand_confidence", "model", "scheme", "seed"):
            assert col in answers, col
        assert set(answers["split"]) == {"eval", "calibration"}
        assert set(answers["grade"]) <= {"correct", "wrong", "abstain"}
        assert answers["confidence"].between(0, 1).all()
        ev = answers[answers["split"] == "eval"]
        assert ev["guess_confidence"].between(0, 1).all()
        assert (answers["scheme"] == scheme).all() and (answers["seed"] == seed).all()
        metrics = json.loads((out / "metrics.json").read_text())
        keys = keys or set(metrics)
        assert set(metrics) == keys
        # rates add up, and the recomputation from the table agrees
        assert metrics["accuracy"] + metrics["hallucination"] + metrics["abstention"] == pytest.approx(1.0)
        assert metrics["hallucination"] == pytest.approx((ev["grade"] == "wrong").mean())
        assert metrics["singleton_rate"] == pytest.approx(0.5)
        assert {"k1.hallucination", "k4.hallucination", "unseen.hallucination", "score_t0.75", "ece_ts",
                "audit_t0.5_answer_rate_below", "accuracy_lo", "accuracy_hi"} <= set(metrics)
        assert metrics["accuracy_lo"] <= metrics["accuracy"] <= metrics["accuracy_hi"]


def test_summary_and_figures(pipeline):
    d = pipeline
    out = d["eval"] / "summary"
    flat = json.loads((out / "metrics.json").read_text())
    for scheme in ["none", *SCHEMES]:
        assert f"tiny/{scheme}/hallucination" in flat and f"tiny/{scheme}/score_t0.9" in flat
    table = pd.read_parquet(out / "summary.parquet")
    assert set(table["scheme"]) == {"none", *SCHEMES}
    for name in ("reliability", "hallucination_vs_abstention", "score_matrix", "accuracy_by_mentions"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000


def test_mlflow_runs_named_and_tagged(pipeline):
    import os

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("nextlab/pt")
    runs = client.search_runs([experiment.experiment_id], max_results=200)
    names = {r.info.run_name: r for r in runs}
    run = names["posttrain/tiny/penalized-0.75/seed1"]
    assert run.data.tags["nextlab.scheme"] == "penalized-0.75" and run.data.tags["nextlab.seed"] == "1"
    assert run.data.tags["nextlab.model"] == "tiny"
    assert len(client.get_metric_history(run.info.run_id, "abstain_rate")) == 2  # one point per step
    ev = names["evaluate/tiny/none/seed0"]
    assert ev.data.tags["nextlab.scheme"] == "none" and "eval/hallucination" in ev.data.metrics


# ---- bad input: exit 2 with a message naming the problem, before any model work ---------------

def test_bad_scheme_and_target(pipeline, capsys):
    d = pipeline
    sft = d["models"] / "sft" / "ckpt.pt"
    for scheme, message in (("penalized-1.5", "t=1.5 must be strictly between 0 and 1"),
                            ("greedy", "unknown scheme 'greedy'")):
        assert cli("posttrain", *common(d), "--scheme", scheme, "--seed", 1, "--init", sft,
                   "--out", d["root"] / "bad") == 2
        assert message in capsys.readouterr().err
    bad = d["root"] / "bad_params.yaml"
    bad.write_text(yaml.safe_dump({**PARAMS, "posttrain": {**PARAMS["posttrain"], "schemes": ["penalized-0"]}}))
    assert cli("sft", "--params", bad, "--model", "tiny", "--init", sft, "--data", d["data"],
               "--tokenizer", d["tok"], "--out", d["root"] / "bad") == 2
    assert "posttrain.schemes" in capsys.readouterr().err
    assert not (d["root"] / "bad").exists()


def test_missing_and_mismatched_checkpoints(pipeline, capsys):
    d = pipeline
    out = d["root"] / "bad"
    assert cli("evaluate", *common(d), "--scheme", "binary", "--seed", 1, "--ckpt", d["root"] / "nope.pt", "--out", out) == 2
    assert "nope.pt: checkpoint not found" in capsys.readouterr().err
    # the SFT model evaluated as if it were binary's post-trained one
    assert cli("evaluate", *common(d), "--scheme", "binary", "--seed", 1, "--ckpt", d["models"] / "sft" / "ckpt.pt",
               "--out", out) == 2
    assert "written by the sft stage, expected posttrain" in capsys.readouterr().err
    # another scheme's checkpoint
    assert cli("evaluate", *common(d), "--scheme", "binary", "--seed", 1,
               "--ckpt", d["models"] / "posttrain" / "calibrated" / "seed1" / "ckpt.pt", "--out", out) == 2
    assert "is scheme 'calibrated' seed 1, expected scheme 'binary' seed 1" in capsys.readouterr().err
    # a model of another shape than the params say
    other = d["root"] / "other_params.yaml"
    other.write_text(yaml.safe_dump({**PARAMS, "models": {"tiny": {**PARAMS["models"]["tiny"], "d_model": 64}}}))
    assert cli("posttrain", "--params", other, "--model", "tiny", "--data", d["data"], "--tokenizer", d["tok"],
               "--scheme", "binary", "--seed", 1, "--init", d["models"] / "sft" / "ckpt.pt", "--out", out) == 2
    assert "model_config differs (d_model: 32 -> 64)" in capsys.readouterr().err
    # calibrated must start from the confidence-taught model
    assert cli("posttrain", *common(d), "--scheme", "calibrated", "--seed", 1, "--init", d["models"] / "sft" / "ckpt.pt",
               "--out", out) == 2
    assert "written by the sft stage, expected sft_confidence" in capsys.readouterr().err
    # a truncated checkpoint
    broken = d["root"] / "broken.pt"
    broken.write_bytes((d["models"] / "sft" / "ckpt.pt").read_bytes()[:1000])
    assert cli("evaluate", *common(d), "--scheme", "none", "--seed", 0, "--ckpt", broken, "--out", out) == 2
    assert "broken.pt: not a readable nextlab checkpoint" in capsys.readouterr().err
    assert not out.exists()


def test_evaluation_set_missing_a_bucket(pipeline, capsys):
    d = pipeline
    data = d["root"] / "data_without_k4"
    shutil.copytree(d["data"], data)
    qa = pd.read_parquet(data / "qa.parquet")
    qa[~((qa["split"] == "eval") & (qa["mentions"] == 4))].to_parquet(data / "qa.parquet", index=False)
    assert cli("evaluate", "--params", d["params"], "--model", "tiny", "--data", data, "--tokenizer", d["tok"],
               "--scheme", "none", "--seed", 0, "--ckpt", d["models"] / "sft" / "ckpt.pt", "--out", d["root"] / "bad") == 2
    assert "no questions in bucket(s) ['k4']" in capsys.readouterr().err


def test_sft_loss_only_on_answer_tokens():
    idx, labels = collate([Example([0, 3, 9, 9, 4], [20, 1]), Example([0, 3, 4], [21, 22, 1])])
    assert idx.tolist() == [[0, 3, 9, 9, 4, 20], [0, 3, 4, 21, 22, 2]]
    assert labels.tolist() == [[IGNORE, IGNORE, IGNORE, IGNORE, 20, 1], [IGNORE, IGNORE, 21, 22, 1, IGNORE]]


def test_weighted_finetune_learns_the_heavier_target():
    """Two targets for one prompt: weighted draws teach the one with weight, never the other
    (the answer-or-abstain phase's drawing, on a toy problem)."""
    from nextlab.model import GPT, GPTConfig
    from nextlab.posttrain.sft import SFTConfig, finetune

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=1, d_model=16))
    examples = [Example([0, 3], [5, 1]), Example([0, 3], [7, 1])]
    cfg = SFTConfig(steps=60, batch_size=4, lr=3e-2, warmup_steps=0)
    finetune(model, examples, cfg, torch.Generator().manual_seed(0), weights=[0.0, 1.0])
    probs = torch.softmax(model(torch.tensor([[0, 3]]))[0, -1], -1)
    assert probs[7] > 0.9 and probs[5] < 0.01


def test_factored_posttrain_through_the_cli(pipeline):
    """`posttrain.advantage: factored` end to end: the job runs on the SFT model, and its per-step
    log reports the policy's own probability of abstaining (answers were drawn given answering)."""
    d = pipeline
    params = d["root"] / "factored.yaml"
    params.write_text(yaml.safe_dump(PARAMS | {"posttrain": PARAMS["posttrain"] | {"advantage": "factored"}}))
    out = d["models"] / "posttrain_factored" / "penalized-0.75" / "seed1"
    assert cli("posttrain", "--params", params, "--threads", 1, "--model", "tiny", "--data", d["data"],
               "--tokenizer", d["tok"], "--scheme", "penalized-0.75", "--seed", 1,
               "--init", d["models"] / "sft" / "ckpt.pt", "--out", out) == 0
    steps = pd.read_csv(out / "steps.csv")
    assert len(steps) == 2
    assert ((steps["abstain_rate"] > 0) & (steps["abstain_rate"] < 1)).all()  # a probability, not a share of draws
    assert (steps["answer_rate"] + steps["abstain_rate"]).to_numpy() == pytest.approx(1.0)
    assert steps[["abstain_rate_seen", "abstain_rate_unseen"]].notna().all().all()
