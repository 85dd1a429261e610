"""Does a stated confidence learned on some people carry over to new ones?

    python benchmarks/confidence_transfer.py --study default          # after `make study`
    python benchmarks/confidence_transfer.py --results /path/to/results/default --params params/default.yaml

The calibrated scheme starts from a confidence SFT (`nextlab sft --confidence`): the SFT model's
greedy answer to each RL-pool question followed by `<|confidence|>` and the model's own probability
of that answer. This script asks the confidence-SFT model the same RL-pool questions (the people its
targets were about) and the calibration split's (people it never got a target for), and prints for
both: how well the stated confidence separates right from wrong answers (AUROC), the same for the
answer's own probability, and how far the stated value is from the probability it was taught to
state. A stated confidence that tracks correctness on the pool but not on new people was learned per
person, not as a readout of what the model knows. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nextlab.config import load_study
from nextlab.posttrain.stage import _start_from
from nextlab.qa.answers import greedy_answers
from nextlab.qa.inputs import read_qa, require_split
from nextlab.qa.metrics import auroc

ROOT = Path(__file__).resolve().parents[1]


def auroc_ci(conf: np.ndarray, right: np.ndarray, resamples: int = 1000) -> tuple[float, float]:
    """95% percentile bootstrap interval of the AUROC over answers (fixed seed: same figures every run)."""
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(right), len(right)) for _ in range(resamples)]
    values = [auroc(conf[i], right[i]) for i in draws if 0 < right[i].sum() < len(i)]
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def taught_confidence(sft_answers: pd.DataFrame) -> np.ndarray:
    """What the confidence SFT teaches for each question: the SFT model's probability of its own
    greedy answer to one decimal, 0.0 where it abstains (as `own_confidence_examples` builds it)."""
    prob = np.round(sft_answers["confidence"].to_numpy(), 1)
    return np.where(sft_answers["grade"].to_numpy() == "abstain", 0.0, prob)


def summarise(answers: pd.DataFrame, taught: np.ndarray) -> dict[str, float]:
    """Over the confidence-SFT model's attempted answers: AUROC of its stated confidence and of its
    answer probability, and the gap between the stated value and the value taught for the question."""
    mask = (answers["grade"] != "abstain").to_numpy()
    tried, taught = answers[mask], taught[mask]
    right = (tried["grade"] == "correct").to_numpy()
    stated = tried["stated_confidence"].fillna(0.0).to_numpy()
    prob = tried["confidence"].to_numpy()
    return {
        "attempted": len(tried), "right": float(right.mean()),
        "stated_auroc": auroc(stated, right), "stated_ci": auroc_ci(stated, right),
        "prob_auroc": auroc(prob, right), "prob_ci": auroc_ci(prob, right),
        "stated_vs_taught_mae": float(np.abs(stated - taught).mean()),
        "stated_vs_taught_corr": float(np.corrcoef(stated, taught)[0, 1]) if stated.std() and taught.std() else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="default")
    parser.add_argument("--params", help="default: params/<study>.yaml")
    parser.add_argument("--results", help="default: results/<study>")
    parser.add_argument("--model", help="default: the study's first model")
    args = parser.parse_args()
    study = load_study(args.params or ROOT / "params" / f"{args.study}.yaml")
    results = Path(args.results or ROOT / "results" / study.study)
    model_name = args.model or next(iter(study.models))
    torch.set_num_threads(min(2, torch.get_num_threads()))

    qa_path = results / "data" / "qa.parquet"
    qa = read_qa(qa_path)
    models = results / "models" / model_name
    ckpt = models / "sft_confidence" / "ckpt.pt"
    _, _, _, codec, model, _ = _start_from(study, model_name, ckpt, results / "tokenizer", "sft_confidence")
    _, _, _, _, sft_model, _ = _start_from(study, model_name, models / "sft" / "ckpt.pt", results / "tokenizer", "sft")
    print(f"confidence-SFT model {ckpt}")
    print("| questions | people | attempted | right | stated-confidence AUROC | answer-probability AUROC "
          "| stated vs taught: mean abs. gap, correlation |\n|---|---:|---:|---:|---|---|---|")
    for split, label in (("rl", "RL pool (its targets' people)"), ("calibration", "calibration (new people)")):
        rows = require_split(qa, split, qa_path)
        ask = (rows["question"].tolist(), rows["answer"].tolist(), study.posttrain.max_answer_tokens)
        answers = greedy_answers(model, codec, *ask)
        s = summarise(answers, taught_confidence(greedy_answers(sft_model, codec, *ask)))
        print(f"| {label} | {rows['person_id'].nunique()} | {s['attempted']} | {s['right']:.2f} "
              f"| {s['stated_auroc']:.2f} [{s['stated_ci'][0]:.2f}, {s['stated_ci'][1]:.2f}] "
              f"| {s['prob_auroc']:.2f} [{s['prob_ci'][0]:.2f}, {s['prob_ci'][1]:.2f}] "
              f"| {s['stated_vs_taught_mae']:.3f}, {s['stated_vs_taught_corr']:.2f} |")


if __name__ == "__main__":
    main()
