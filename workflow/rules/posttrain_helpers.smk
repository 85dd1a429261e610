# Helpers of the posttrain and evaluate rules (functions live apart from rules, as
# `snakemake --lint` asks). Included by posttrain.smk.

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


def _model_shape(wildcards):
    return section_dict(P, "models")["models"][wildcards.model]


def sft_params(wildcards):
    used = section_dict(P, "study", "seed", "sft", "tracking")
    used["device"] = P.train.device
    used["model"] = _model_shape(wildcards)
    return json.dumps(used, sort_keys=True)


def posttrain_params(wildcards):
    """Adding a scheme or a seed to the lists reruns no finished job: the lists are left out."""
    used = section_dict(P, "study", "seed", "sft", "posttrain", "tracking")
    for key in ("schemes", "seeds"):
        used["posttrain"].pop(key)
    used["device"] = P.train.device
    used["model"] = _model_shape(wildcards)
    return json.dumps(used, sort_keys=True)


def posttrain_start(wildcards):
    """calibrated starts from the confidence-taught SFT model, every other scheme from the SFT model."""
    start = "sft_confidence" if parse_scheme(wildcards.scheme).kind == "calibrated" else "sft"
    return f"{RESULTS}/models/{wildcards.model}/{start}/ckpt.pt"


def evaluate_params(wildcards):
    used = section_dict(P, "study", "seed", "evaluate", "tracking")
    # the buckets every evaluation must cover come from the data params
    used["buckets"] = {"mention_mix": list(P.data.mention_mix), "n_unseen": P.data.n_unseen}
    used["device"] = P.train.device
    used["model"] = _model_shape(wildcards)
    return json.dumps(used, sort_keys=True)


def evaluated_checkpoint(wildcards):
    if not parse_scheme(wildcards.scheme).trains:
        return f"{RESULTS}/models/{wildcards.model}/sft/ckpt.pt"
    return f"{RESULTS}/models/{wildcards.model}/posttrain/{wildcards.scheme}/seed{wildcards.seed}/ckpt.pt"


def model_answers(wildcards):
    return [
        f"{RESULTS}/evaluate/{wildcards.model}/{scheme}/seed{seed}/answers.parquet" for scheme, seed in EVAL_RUNS
    ]
