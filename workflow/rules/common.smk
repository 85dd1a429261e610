# Shared helpers. `P` is the validated Study (see the Snakefile); every path is under the study.

import json
import os

from nextlab import tracking
from nextlab.config import section_dict

RESULTS = f"results/{P.study}"
LOGS = f"logs/{P.study}"
ALL = []  # each stage's file extends it with its final targets
STAGES = [
    stage
    for stage in ["data", "tokenize", "train", "posttrain", "evaluate", "nondeterminism", "report"]
    if os.path.exists(os.path.join(workflow.basedir, "workflow", "rules", f"{stage}.smk"))
]


CONDA_ENV = "../envs/nextlab.yaml"


def folder_of(key, io="output"):
    """A param holding the folder of one of the rule's files (a function, so it follows the file)."""
    if io == "output":
        return lambda wildcards, output: os.path.dirname(output[key])
    return lambda wildcards, input: os.path.dirname(input[key])


def rule_params(*keys):
    """The params sections one job reads; editing any other section reruns nothing."""
    return json.dumps(section_dict(P, *keys), sort_keys=True)


def model_job_params(*keys, device=False):
    """Like rule_params, for a job of one {model}: its own shape, not the other models' (and the
    device it runs on, where that changes its numbers)."""

    def used(wildcards):
        params = section_dict(P, *keys)
        params["model"] = section_dict(P, "models")["models"][wildcards.model]
        if device:
            params["device"] = P.train.device
        return json.dumps(params, sort_keys=True)

    return used
