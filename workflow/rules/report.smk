# The report: every figure, report.md and a self-contained report.html, from the results tables
# alone (no model is loaded, nothing is retrained). One job draws them all: a figure takes a
# fraction of a second, a job per figure would pay Python's start-up each time.
# Every figure is a report() output, so `snakemake --report` groups them by stage and labels them
# by model, scheme and seed (`all` where a figure compares them), with the caption (claim,
# findings, intervals) the job writes beside it.

from nextlab.config import Study
from nextlab.report.registry import needed_paths, plan

REPORTS = f"reports/{P.study}"
# Figures of the stages whose rules exist; a new stage's figures join when its .smk file does.
REPORT_STAGES = [s for s in STAGES if s != "report"]
REPORT_FIGURES = plan(P, REPORT_STAGES)
REPORT_INPUTS = sorted({f"{RESULTS}/{path}" for i in REPORT_FIGURES for path, _ in needed_paths(i, P)})
# Where a figure does not vary a factor, the value the stages tag their runs with.
REPORT_DEFAULTS = {
    "data": {"model": "-", "scheme": "-", "seed": str(P.seed)},
    "train": {"model": "all", "scheme": "pretrain", "seed": str(P.seed)},
}


rule report:
    input:
        tables=REPORT_INPUTS,
        data_stats=rules.data.output.stats,
    output:
        figures=[
            report(
                kept(f"{REPORTS}/figures/{i.filename}"),
                # relative to this file; the report job writes the caption beside the figure
                caption=f"../../{REPORTS}/figures/{i.stem}.rst",
                category=i.figure.stage,
                subcategory=i.labels.get("model", "study"),
                labels={"figure": i.figure.title}
                | {"model": "all", "scheme": "all", "seed": "all"}
                | REPORT_DEFAULTS.get(i.figure.stage, {})
                # a control scheme (posttrain.invariant_control) is labelled as the scheme it is
                | {("scheme" if k == "control" else k): v for k, v in i.labels.items()},
            )
            for i in REPORT_FIGURES
        ],
        captions=[kept(f"{REPORTS}/figures/{i.stem}.rst") for i in REPORT_FIGURES],
        markdown=kept(f"{REPORTS}/report.md"),
        html=report(
            kept(f"{REPORTS}/report.html"),
            caption="../report/report.rst",
            category="report",
            labels={"figure": "the report", "model": "all", "scheme": "all", "seed": "all"},
        ),
        # Beside them, the figures' tables in reports/<study>/plots/ (one folder per figure, what DVC
        # plots read): rewritten by every report job, not declared, so Snakemake never deletes them.
        findings=kept(f"{REPORTS}/findings.json"),
        headline=kept(f"{REPORTS}/headline.json"),
    params:
        # Every section: the report states the whole study's params hash (and takes seconds).
        job=job(*Study.model_fields),
        code=code("report"),
        stages=",".join(REPORT_STAGES),
        results=lambda wildcards, input: os.path.dirname(os.path.dirname(input.data_stats)),
        out=folder_of("markdown"),
        logs=LOGS,
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{LOGS}/benchmarks/report.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "nextlab report --job {params.job:q} --threads {threads} --results {params.results:q} "
        "--out {params.out:q} --logs {params.logs:q} --stages {params.stages} > {log:q} 2>&1"


ALL.extend([rules.report.output.html, rules.report.output.headline])
