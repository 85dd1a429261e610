"""Post-training settings against the best policy the SFT model's knowledge allows, measured on the
calibration split only (never the evaluation split), for choosing the post-training params.

    python benchmarks/posttrain_sweep.py --study default [--seeds 1] [--schemes penalized-0.5 ...]

Starts from results/<study>/models/<model>/sft/ckpt.pt (run the study first), post-trains each
scheme under each setting of `SETTINGS` into a temporary folder (`nextlab.posttrain.stage`), answers
the calibration split greedily and prints one row per (setting, scheme): the score at the scheme's
own t, the SFT model's threshold policy on its candidate-normalised probability at that t (the
reference to reach), abstention on all questions and on facts seen 16 times, hallucination on
never-seen names, and how often the trained model's best candidate guess is still right on seen
people's questions (beside the SFT model's: what post-training cost its knowledge). Seconds are wall clock on a shared machine: noisy. One thread.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# name -> posttrain params overriding the study's (the first is the study's own setting). Every
# other setting names its advantage, so a row means the same whatever the study's file says.
SETTINGS = {
    "study": {},
    "group": {"advantage": "group"},
    "vs_abstain": {"advantage": "vs_abstain"},
    "vs_abstain, rl only": {"advantage": "vs_abstain", "finetune_share": 0.0},
    "vs_abstain, rl only, lr 2e-4": {"advantage": "vs_abstain", "finetune_share": 0.0, "lr": 2e-4},
    # Sampling nearer to the greedy answer that is graded: fewer wrong samples to push down.
    "temperature 0.3": {"advantage": "group", "temperature": 0.3},
    "vs_abstain, temperature 0.3": {"advantage": "vs_abstain", "temperature": 0.3},
    # The answer-or-abstain phase (nextlab.posttrain.decision) first, then policy gradient.
    "decision 60": {"advantage": "group", "decision_steps": 60},
    "decision 60, vs_abstain": {"decision_steps": 60, "advantage": "vs_abstain"},
    "decision 120, vs_abstain": {"decision_steps": 120, "advantage": "vs_abstain"},
    "decision 120 lr 3e-4, vs_abstain": {"decision_steps": 120, "decision_lr": 3e-4, "advantage": "vs_abstain"},
    # The same phase with the start model's own belief as the target (its threshold policy, distilled).
    "belief 60": {"advantage": "group", "decision_steps": 60, "decision_targets": "belief"},
    "belief 60, vs_abstain": {"decision_steps": 60, "decision_targets": "belief", "advantage": "vs_abstain"},
    "belief 120 lr 3e-4, vs_abstain": {"decision_steps": 120, "decision_lr": 3e-4, "decision_targets": "belief",
                                       "advantage": "vs_abstain"},
    # Sampling near the greedy answer that is graded, with the belief phase first.
    "belief 60, vs_abstain, temperature 0.3": {"decision_steps": 60, "decision_targets": "belief",
                                               "advantage": "vs_abstain", "temperature": 0.3},
    "vs_abstain, temperature 0.3, lr 2e-4": {"advantage": "vs_abstain", "temperature": 0.3, "lr": 2e-4},
    "decision 60, vs_abstain, temperature 0.3": {"decision_steps": 60, "advantage": "vs_abstain",
                                                 "temperature": 0.3},
    "decision 120, vs_abstain, temperature 0.3": {"decision_steps": 120, "advantage": "vs_abstain",
                                                  "temperature": 0.3},
    "recalibrated 60": {"advantage": "group", "decision_steps": 60, "decision_targets": "recalibrated"},
    "recalibrated 60, vs_abstain": {"decision_steps": 60, "decision_targets": "recalibrated",
                                    "advantage": "vs_abstain"},
    "recalibrated 120, no pg": {"advantage": "group", "decision_steps": 120, "decision_targets": "recalibrated",
                                "lr": 1e-9},
    # The phase alone: policy gradient at a learning rate too small to move anything (an ablation).
    "belief 120, no pg": {"advantage": "group", "decision_steps": 120, "decision_targets": "belief", "lr": 1e-9},
    "belief 240 lr 3e-4, no pg": {"advantage": "group", "decision_steps": 240, "decision_lr": 3e-4, "decision_targets": "belief",
                                  "lr": 1e-9},
    "outcome 120, no pg": {"advantage": "group", "decision_steps": 120, "lr": 1e-9},
    # Smaller steps and more questions per step: does the collapse to "I don't know" come from noise?
    "vs_abstain, lr 3e-5": {"advantage": "vs_abstain", "lr": 3e-5},
    "vs_abstain, lr 1e-5": {"advantage": "vs_abstain", "lr": 1e-5},
    "vs_abstain, lr 3e-5, 36 questions": {"advantage": "vs_abstain", "lr": 3e-5, "questions_per_step": 36},
    # Answer-or-abstain and the value learned apart, answers drawn given answering (issue 11).
    "factored": {"advantage": "factored"},
    "factored, lr 3e-4": {"advantage": "factored", "lr": 3e-4},
    "factored, lr 3e-4, 60 steps": {"advantage": "factored", "lr": 3e-4, "steps": 60},
    "factored, lr 1e-3": {"advantage": "factored", "lr": 1e-3},
    "factored, temperature 1.0": {"advantage": "factored", "temperature": 1.0},
    "factored, lr 3e-4, temperature 1.0": {"advantage": "factored", "lr": 3e-4, "temperature": 1.0},
}


def answer(model, codec, rows, world, p):
    import pandas as pd

    from nextlab.qa.answers import candidate_columns, greedy_answers

    rows = rows.reset_index(drop=True)
    golds = rows["answer"].tolist()
    got = greedy_answers(model, codec, rows["question"].tolist(), golds, p.max_answer_tokens, p.batch_size)
    cands = candidate_columns(model, codec, rows["question"].tolist(), rows["attribute"].tolist(),
                              got["answer"].tolist(), golds, world.vocabularies)
    return pd.concat([rows[["mentions", "seen"]], got, cands], axis=1)


def measures(table, t: float) -> dict[str, float]:
    from nextlab.qa import metrics as M

    correct = (table["grade"] == "correct").to_numpy()
    abstain = (table["grade"] == "abstain").to_numpy()
    k16 = (table["mentions"] == table["mentions"].max()).to_numpy()
    unseen = ~table["seen"].to_numpy(bool)
    return {
        "score": M.score(correct, abstain, t),
        "abstain": float(abstain.mean()),
        "abstain_k16": float(abstain[k16].mean()),
        "halluc_unseen": float((~correct & ~abstain)[unseen].mean()),
        "halluc": float((~correct & ~abstain).mean()),
        "threshold": float(M.threshold_policy(table["guess_confidence"], table["guess_correct"], t).mean()),
        # What the model still knows: its best candidate guess is right (on seen people's questions).
        "guess_right": float(table["guess_correct"].to_numpy(bool)[~unseen].mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="default")
    parser.add_argument("--model", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--schemes", nargs="+", default=["penalized-0.5", "penalized-0.75", "penalized-0.9"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    torch.set_num_threads(1)

    from nextlab.config import load_study
    from nextlab.config.posttrain import parse_scheme
    from nextlab.data.world import World
    from nextlab.evaluate.tables import own_target
    from nextlab.model.checkpoint import load_model
    from nextlab.posttrain import stage
    from nextlab.qa.codec import QACodec
    from nextlab.qa.inputs import read_qa
    from nextlab.tokenizer import load_tokenizer

    study = load_study(Path("params") / f"{args.study}.yaml")
    results = Path("results") / study.study
    model_name = args.model or next(iter(study.models))
    data, tok_dir = results / "data", results / "tokenizer"
    sft = results / "models" / model_name / "sft" / "ckpt.pt"
    world = World.load(data / "world.json")
    calib = read_qa(data / "qa.parquet").query("split == 'calibration'")
    codec = QACodec(load_tokenizer(tok_dir / "tokenizer.json"))
    model, _ = load_model(sft, torch.device("cpu"))
    start_table = answer(model, codec, calib, world, study.evaluate)
    print(f"study {study.study}, model {model_name}, calibration split: {len(calib)} questions "
          f"({int((~calib['seen']).sum())} never-seen names), seeds {args.seeds}")
    print("| setting | scheme | score at own t | SFT threshold (cand) | SFT model's own score | abstain | "
          "abstain k16 | halluc. | SFT halluc. | halluc. unseen | best guess right (SFT) | s/run |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.settings:
        p = study.posttrain.model_copy(update=SETTINGS[name])
        run_study = study.model_copy(update={"posttrain": p})
        for scheme in args.schemes:
            t = own_target(scheme) or 0.0
            parse_scheme(scheme)
            rows = []
            seconds = []
            for seed in args.seeds:
                with tempfile.TemporaryDirectory() as out:
                    t0 = time.perf_counter()
                    stage.run(run_study, stage.Inputs(init=sft, data=data, tokenizer=tok_dir), out, model=model_name,
                              scheme=scheme, seed=seed)
                    seconds.append(time.perf_counter() - t0)
                    trained, _ = load_model(Path(out) / "ckpt.pt", torch.device("cpu"))
                rows.append(measures(answer(trained, codec, calib, world, study.evaluate), t))
            mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
            ref = measures(start_table, t)
            print(f"| {name} | {scheme} | {mean['score']:.3f} | {ref['threshold']:.3f} | {ref['score']:.3f} | "
                  f"{mean['abstain']:.2f} | {mean['abstain_k16']:.2f} | {mean['halluc']:.3f} | {ref['halluc']:.3f} | "
                  f"{mean['halluc_unseen']:.3f} | {mean['guess_right']:.3f} ({ref['guess_right']:.3f}) | "
                  f"{np.mean(seconds):.0f} |", flush=True)


if __name__ == "__main__":
    main()
