# Shared helpers. `P` is the validated Study (see the Snakefile); every path is under the study.
#
# Each job gets two params, and Snakemake reruns the job when either changes -
#   job=   the params sections the stage reads, as JSON (`nextlab <stage> --job ...`): the job's
#          only source of params, so a result follows exactly the params it was made from, and an
#          unrelated edit (or renaming the params file) reruns nothing;
#   code=  a hash of the source of the `nextlab` modules the stage runs (computed from its
#          imports) and of requirements.lock: editing a module reruns the jobs whose stage uses it.
# Outputs are `kept()`: Snakemake keeps the previous files while the job runs and puts them back
# if it fails, so a failing job never costs a finished result.

import hashlib
import json
import os
import sys

from nextlab import layout, stages, tracking
from nextlab.config import job_sections
from nextlab.provenance import code_hash

RESULTS = f"results/{P.study}"
LOGS = f"logs/{P.study}"
ALL = []  # each stage's file extends it with its final targets
# The stages this study runs (nextlab.stages: the list, and what leaves a stage out).
STAGES = stages.planned(P)
if not P.data.synthetic:
    print(
        f"nextlab: data.user_corpus.mode is 'replace' (no synthetic world): the stages "
        f"{', '.join(stages.WORLD_STAGES)} are left out; the study trains on the user corpus, reports its loss, "
        f"and the nondeterminism stage decodes the user's held-out text",
        file=sys.stderr,
    )

CONDA_ENV = "../envs/nextlab.yaml"
LOCK_HASH = hashlib.sha256(open(os.path.join(workflow.basedir, "requirements.lock"), "rb").read()).hexdigest()[:16]


def code(stage):
    """The code fingerprint of a job of `nextlab <stage>`."""
    return f"{code_hash(stage)}-{LOCK_HASH}"


def job(*sections, per_model=False, withhold=None):
    """The `--job` JSON: these params sections (and, `per_model`, only the {model} wildcard's shape).
    `withhold`: keys that name jobs rather than shape one (the schemes and seeds to run)."""

    def text(models=None):
        return json.dumps(job_sections(P, *sections, models=models, withhold=withhold), sort_keys=True)

    if per_model:
        return lambda wildcards: text([wildcards.model])
    return text()


def result(path, **values):
    """A results file of this study (a `nextlab.layout` template), with some fields filled."""
    return f"{RESULTS}/{layout.fill(path, **values)}"


def kept(path):
    """An output left in place while its job runs, and restored if the job fails."""
    return update(path)


def folder_of(key, io="output"):
    """A param holding the folder of one of the rule's files (a function, so it follows the file)."""
    if io == "output":
        return lambda wildcards, output: os.path.dirname(output[key])
    return lambda wildcards, input: os.path.dirname(input[key])


def slurm_unreachable(workflow):
    """Why the SLURM controller cannot take jobs (None when it can, or when not on SLURM)."""
    import shutil
    import subprocess

    plugin = getattr(workflow, "executor_plugin", None)
    if getattr(plugin, "name", None) != "slurm" or workflow.dryrun:
        return None
    if shutil.which("scontrol") is None:
        return "the slurm executor needs SLURM's client commands (scontrol, sbatch) on the PATH"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "the SLURM controller did not answer `scontrol ping` within 30 s"
    if ping.returncode != 0 or " is UP" not in ping.stdout:
        said = " ".join((ping.stdout + ping.stderr).split())
        return f"the SLURM controller (slurmctld) is not reachable: `scontrol ping` says: {said}"
    return None
