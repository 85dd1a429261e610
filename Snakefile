# nextlab: one DAG from a synthetic world to the report.
#   snakemake --profile workflow/profiles/default                        # the default study
#   snakemake --profile workflow/profiles/default --config params=params/smoke.yaml
# The params file is validated against nextlab.config before any job runs.

import sys

from nextlab.config import load_study
from nextlab.errors import ParamsError

PARAMS = config.get("params", "params/default.yaml")
try:
    P = load_study(PARAMS)
except ParamsError as err:
    sys.exit(f"nextlab: invalid params: {err}")


include: "workflow/rules/common.smk"

# `snakemake --report report.html`: the description on its front page.
report: "workflow/report/workflow.rst"


# One file per stage, in the order of the data flow.
for stage in STAGES:
    include: f"workflow/rules/{stage}.smk"


onstart:
    # Create the MLflow database, experiment and this invocation's parent run once, before any
    # parallel job (parallel creation races: see ARCHITECTURE.md).
    info = tracking.start_invocation(P, logs_root=Path("logs"))
    if info:
        os.environ[tracking.PARENT_ENV] = info["parent_run_id"]


onsuccess:
    tracking.end_invocation(P, "FINISHED", logs_root=Path("logs"))


onerror:
    tracking.end_invocation(P, "FAILED", logs_root=Path("logs"))


rule all:
    input:
        ALL,
    default_target: True
