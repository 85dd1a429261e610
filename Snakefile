# nextlab: one DAG from a synthetic world to the report.
#   snakemake --profile workflow/profiles/default                        # the default study
#   snakemake --profile workflow/profiles/default --config params=params/smoke.yaml
# Before any job runs, the whole params file is validated against nextlab.config, a user corpus
# is read and checked, and the study's memory needs are set against this machine's.

import sys

from nextlab.config import load_study
from nextlab.config.resources import check_fits
from nextlab.data.user_corpus import check_user_corpus
from nextlab.errors import NextlabError
from nextlab.provenance import params_hash

PARAMS = config.get("params", "params/default.yaml")
try:
    P = load_study(PARAMS)
    check_user_corpus(P.data.user_corpus)
    check_fits(P, PARAMS)
except NextlabError as err:
    sys.exit(f"nextlab: invalid params: {err}")


include: "workflow/rules/common.smk"

# `snakemake --report report.html`: the description on its front page.
report: "workflow/report/workflow.rst"


# One file per stage, in the order of the data flow (nextlab.stages); STAGES leaves out the stages
# this study does not run (those of the synthetic world when a user corpus replaces it, and those
# whose params section is not enabled).
include: "workflow/rules/data.smk"
include: "workflow/rules/tokenize.smk"
include: "workflow/rules/train.smk"
if "sft" in STAGES:
    include: "workflow/rules/sft.smk"
if "posttrain" in STAGES:
    include: "workflow/rules/posttrain.smk"
if "evaluate" in STAGES:
    include: "workflow/rules/evaluate.smk"
include: "workflow/rules/nondeterminism.smk"
if "mechanisms" in STAGES:
    include: "workflow/rules/mechanisms.smk"
if "positions" in STAGES:
    include: "workflow/rules/positions.smk"
if "agent" in STAGES:
    include: "workflow/rules/agent.smk"
include: "workflow/rules/report.smk"


onstart:
    # On a cluster, find an unreachable controller in seconds, with its name, before any job.
    cluster_problem = slurm_unreachable(workflow)
    if cluster_problem:
        sys.exit(f"nextlab: {cluster_problem}")
    # Probe the tracking store once, then create the MLflow database, experiment and this
    # invocation's parent run, before any parallel job (created in parallel, they race).
    os.environ[tracking.STUDY_HASH_ENV] = params_hash(P)
    info = tracking.start_invocation(P, logs_root=Path("logs"))
    if "off" in info:
        os.environ[tracking.OFF_ENV] = info["off"]
    else:
        os.environ[tracking.PARENT_ENV] = info["parent_run_id"]


onsuccess:
    tracking.end_invocation(P, "FINISHED", logs_root=Path("logs"))
    if tracking.OFF_ENV not in os.environ and P.tracking.enabled:
        from nextlab.report.mlflow_view import study_links

        try:
            print("\n".join(study_links(P)), file=sys.stderr)
        except Exception as err:  # links are a convenience: never fail a finished study for them
            print(f"nextlab: no MLflow links ({err})", file=sys.stderr)


onerror:
    tracking.end_invocation(P, "FAILED", logs_root=Path("logs"))


rule all:
    input:
        ALL,
    default_target: True


# Cheap jobs run where snakemake runs, never in a cluster's queue (those of the stages this study has).
workflow.localrules(*({"all", "evaluate_summary", "nondeterminism_summary", "report"} & {r.name for r in workflow.rules}))
