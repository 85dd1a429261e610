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

    python benchmarks/confidence_transfer.py --study default --accuracy-samples 8

teaches the confidence another way first (issue 11's idea): a confidence SFT from the SFT model, as
the study's, but each target is the model's measured accuracy on the question (the share of
`--accuracy-samples` answers sampled at temperature 1 that are right) instead of its probability,
then asks the same questions of it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nextlab.config import load_study
from nextlab.evaluate.bootstrap import interval
from nextlab.evaluate.summary import auroc_stat
from nextlab.model.checkpoint import load_model
from nextlab.qa.answers import greedy_answers
from nextlab.qa.codec import QACodec
from nextlab.qa.inputs import read_qa, require_split
from nextlab.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def auroc_interval(conf: np.ndarray, right: np.ndarray) -> tuple[float, float, float]:
    """AUROC and its 95% bootstrap interval over answers, as the evaluation computes them."""
    return interval(auroc_stat(np.ones((1, len(right))), conf[None], right[None].astype(float)), 1, len(right))


def taught_confidence(sft_answers: pd.DataFrame) -> np.ndarray:
    """What the confidence SFT teaches for each question: the SFT model's probability of its own
    greedy answer to one decimal, 0.0 where it abstains (as `own_confidence_examples` builds it)."""
    prob = np.round(sft_answers["confidence"].to_numpy(), 1)
    return np.where(sft_answers["grade"].to_numpy() == "abstain", 0.0, prob)


def accuracy_examples(model, codec: QACodec, questions: list[str], golds: list[str], samples: int,
                      max_tokens: int, generator: torch.Generator) -> tuple[list, np.ndarray]:
    """Confidence-SFT examples whose stated value is the model's measured accuracy: its greedy answer,
    then the share of `samples` answers drawn at temperature 1 that are right (0.0 after "I don't
    know"), and those values."""
    from nextlab.generate import EOS_ID, generate
    from nextlab.posttrain.sft import Example
    from nextlab.qa.codec import graded
    from nextlab.qa.grading import is_abstention

    examples, values = [], []
    for start in range(0, len(questions), 32):
        prompts = [codec.prompt(q) for q in questions[start : start + 32]]
        greedy = generate(model, prompts, max_tokens, temperature=0.0, eos_id=EOS_ID)
        drawn = generate(model, [p for p in prompts for _ in range(samples)], max_tokens, temperature=1.0,
                         eos_id=EOS_ID, generator=generator)
        for i, (prompt, gold) in enumerate(zip(prompts, golds[start : start + 32])):
            answer = codec.decode(greedy.tokens[i]).answer
            right = [graded(codec.decode(t), gold) == "correct" for t in drawn.tokens[i * samples : (i + 1) * samples]]
            value = 0.0 if is_abstention(answer) else float(np.mean(right))
            examples.append(Example(prompt, codec.answer(answer, confidence=value)))
            values.append(round(value, 1))
    return examples, np.array(values)


def summarise(answers: pd.DataFrame, taught: np.ndarray) -> dict[str, object]:
    """Over the confidence-SFT model's attempted answers: AUROC of its stated confidence and of its
    answer probability, and the gap between the stated value and the value taught for the question."""
    mask = (answers["grade"] != "abstain").to_numpy()
    tried, taught = answers[mask], taught[mask]
    right = (tried["grade"] == "correct").to_numpy()
    stated = tried["stated_confidence"].fillna(0.0).to_numpy()
    prob = tried["confidence"].to_numpy()
    return {
        "attempted": len(tried), "right": float(right.mean()),
        "stated_auroc": auroc_interval(stated, right), "prob_auroc": auroc_interval(prob, right),
        "stated_vs_taught_mae": float(np.abs(stated - taught).mean()),
        "stated_vs_taught_corr": float(np.corrcoef(stated, taught)[0, 1]) if stated.std() and taught.std() else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="default")
    parser.add_argument("--params", help="default: params/<study>.yaml")
    parser.add_argument("--results", help="default: results/<study>")
    parser.add_argument("--model", help="default: the study's first model")
    parser.add_argument("--accuracy-samples", type=int, default=0,
                        help="teach the confidence from this many sampled answers per question first (0: use the "
                        "study's confidence-SFT model)")
    args = parser.parse_args()
    study = load_study(args.params or ROOT / "params" / f"{args.study}.yaml")
    results = Path(args.results or ROOT / "results" / study.study)
    model_name = args.model or next(iter(study.models))
    torch.set_num_threads(min(2, torch.get_num_threads()))

    qa_path = results / "data" / "qa.parquet"
    qa = read_qa(qa_path)
    models = results / "models" / model_name
    ckpt = models / "sft_confidence" / "ckpt.pt"
    codec = QACodec(load_tokenizer(results / "tokenizer" / "tokenizer.json"))
    model, _ = load_model(ckpt)
    sft_model, _ = load_model(models / "sft" / "ckpt.pt")
    taught: dict[str, np.ndarray] = {}
    if args.accuracy_samples:
        import copy

        from nextlab.posttrain.sft import SFTConfig, finetune

        p, generator = study.sft, torch.Generator().manual_seed(study.seed)
        for split in ("rl", "calibration"):
            rows = require_split(qa, split, qa_path)
            examples, taught[split] = accuracy_examples(sft_model, codec, rows["question"].tolist(),
                                                        rows["answer"].tolist(), args.accuracy_samples,
                                                        study.posttrain.max_answer_tokens, generator)
            if split == "rl":
                train_on = examples
        model = copy.deepcopy(sft_model)
        finetune(model, train_on, SFTConfig(steps=p.confidence_steps, batch_size=p.batch_size, lr=p.confidence_lr,
                                            warmup_steps=min(p.warmup_steps, p.confidence_steps),
                                            weight_decay=p.weight_decay, grad_clip=p.grad_clip),
                 torch.Generator().manual_seed(study.seed + 13))
        model.eval()
        ckpt = f"the SFT model taught its measured accuracy ({args.accuracy_samples} samples, RL pool, "\
               f"{p.confidence_steps} steps)"
    print(f"confidence-SFT model {ckpt}")
    print("| questions | people | attempted | right | stated-confidence AUROC | answer-probability AUROC "
          "| stated vs taught: mean abs. gap, correlation |\n|---|---:|---:|---:|---|---|---|")
    for split, label in (("rl", "RL pool (its targets' people)"), ("calibration", "calibration (new people)")):
        rows = require_split(qa, split, qa_path)
        ask = (rows["question"].tolist(), rows["answer"].tolist(), study.posttrain.max_answer_tokens)
        answers = greedy_answers(model, codec, *ask)
        s = summarise(answers, taught.get(split, taught_confidence(greedy_answers(sft_model, codec, *ask))))
        cells = [label, str(rows["person_id"].nunique()), str(s["attempted"]), f"{s['right']:.2f}",
                 "{:.2f} [{:.2f}, {:.2f}]".format(*s["stated_auroc"]), "{:.2f} [{:.2f}, {:.2f}]".format(*s["prob_auroc"]),
                 f"{s['stated_vs_taught_mae']:.3f}, {s['stated_vs_taught_corr']:.2f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
