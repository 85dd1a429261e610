# Helpers of the sft, posttrain and evaluate rules (functions live apart from rules, as
# `snakemake --lint` asks). Each of their files includes it; Snakemake reads it once.

import re

from nextlab.config.posttrain import parse_scheme

SCHEMES = list(P.posttrain.schemes)
TRAINED_SCHEMES = [s for s in SCHEMES if parse_scheme(s).trains]
POSTTRAIN_SEEDS = list(P.posttrain.seeds)
# (scheme, seed) pairs that have a model to evaluate: `none` (the SFT model) once, as seed 0.
EVAL_RUNS = [(s, 0) for s in SCHEMES if not parse_scheme(s).trains] + [
    (s, k) for s in TRAINED_SCHEMES for k in POSTTRAIN_SEEDS
]
SUMMARY_FIGURES = ["reliability", "hallucination_vs_abstention", "score_matrix", "accuracy_by_mentions"]
# Adding a scheme or a seed to the lists reruns no finished job: the lists name jobs.
NAMES_JOBS = {"posttrain": ["schemes", "seeds", "invariant_control"]}
INVARIANT_CONTROL = list(P.posttrain.invariant_control)
POSTTRAIN_JOB = job("study", "seed", "device", "sft", "posttrain", "tracking", per_model=True, withhold=NAMES_JOBS)


def invariant_job(wildcards):
    """A post-training job's params with `batch_invariant` set: the exactly on-policy control run."""
    params = json.loads(POSTTRAIN_JOB(wildcards))
    params["posttrain"]["batch_invariant"] = True
    return json.dumps(params, sort_keys=True)


# the buckets every evaluation must cover come from the data params
EVALUATE_JOB = job("study", "seed", "device", "evaluate", "data", "tracking", per_model=True)


def posttrain_start(wildcards):
    """calibrated starts from the confidence-taught SFT model, every other scheme from the SFT model."""
    start = layout.SFT_CONFIDENCE if parse_scheme(wildcards.scheme).kind == "calibrated" else layout.SFT
    return result(f"{start}/ckpt.pt", model=wildcards.model)


def evaluated_checkpoint(wildcards):
    if not parse_scheme(wildcards.scheme).trains:
        return result(f"{layout.SFT}/ckpt.pt", model=wildcards.model)
    return result(f"{layout.POSTTRAIN}/ckpt.pt", model=wildcards.model, scheme=wildcards.scheme, seed=wildcards.seed)


def model_answers(wildcards):
    return [
        result(layout.EVALUATE_ANSWERS, model=wildcards.model, scheme=scheme, seed=seed) for scheme, seed in EVAL_RUNS
    ]
