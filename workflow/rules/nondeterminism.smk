# Nondeterminism across batch sizes: one job per model x dtype x attention path x thread count
# (each sweeps batch sizes, padding sides and the KV cache itself), then one summary per model
# (figures and a flat metrics.json over its jobs).

import shlex

from nextlab.config.nondeterminism import FIGURES as ND_FIGURES, TABLES as ND_TABLES

ND = P.nondeterminism
ND_JOBS = [(d, a, t) for d in ND.dtypes for a in ND.attention for t in ND.threads]
ND_JOB_DIR = result(layout.NONDETERMINISM_JOB)
ND_SUMMARY_OUT = result(layout.NONDETERMINISM_SUMMARY)


rule nondeterminism:
    input:
        # the SFT model by default (it answers the QA prompts), or the pretrained one
        # (always the pretrained one when a user corpus replaces the world: no QA to fine-tune on)
        ckpt=lambda wildcards: (
            rules.sft if ND.checkpoint == "sft" and P.data.synthetic else rules.train
        ).output.ckpt.format(model=wildcards.model),
        tokenizer=rules.tokenize.output.tokenizer,
        qa=rules.data.output.qa,
        val=rules.data.output.val,
        data_stats=rules.data.output.stats,
    output:
        metrics=kept(f"{ND_JOB_DIR}/metrics.json"),
        tables=[kept(f"{ND_JOB_DIR}/{name}.parquet") for name in ND_TABLES],
        env=kept(f"{ND_JOB_DIR}/env.json"),
        provenance=kept(f"{ND_JOB_DIR}/provenance.json"),
    wildcard_constraints:
        model="|".join(P.models),
        dtype="|".join(ND.dtypes),
        attention="|".join(ND.attention),
        threads=r"\d+",
    params:
        job=job("study", "seed", "device", "data", "nondeterminism", "tracking", per_model=True),
        code=code("nondeterminism"),
        data=folder_of("qa", io="input"),
        tokenizer=folder_of("tokenizer", io="input"),
        out=folder_of("metrics"),
    log:
        f"{LOGS}/nondeterminism/{{model}}/{{dtype}}_{{attention}}_threads{{threads}}.log",
    benchmark:
        f"{LOGS}/benchmarks/nondeterminism_{{model}}_{{dtype}}_{{attention}}_threads{{threads}}.tsv"
    # The thread count is a factor of the measurement (bits change with it): the job runs torch
    # with exactly {threads}, and asks the scheduler for as many cores.
    threads: lambda wildcards: int(wildcards.threads)
    conda:
        CONDA_ENV
    shell:
        "nextlab nondeterminism --job {params.job:q} --threads {wildcards.threads} --model {wildcards.model} "
        "--dtype {wildcards.dtype} --attention {wildcards.attention} --ckpt {input.ckpt:q} "
        "--data {params.data:q} --tokenizer {params.tokenizer:q} --out {params.out:q} > {log:q} 2>&1"


rule nondeterminism_summary:
    input:
        metrics=lambda wildcards: [
            rules.nondeterminism.output.metrics.format(model=wildcards.model, dtype=d, attention=a, threads=t)
            for d, a, t in ND_JOBS
        ],
        tables=lambda wildcards: [
            f"{result(layout.NONDETERMINISM_JOB, model=wildcards.model, dtype=d, attention=a, threads=t)}/{name}"
            for d, a, t in ND_JOBS
            for name in [f"{table}.parquet" for table in ND_TABLES] + ["env.json", "provenance.json"]
        ],
    output:
        metrics=kept(f"{ND_SUMMARY_OUT}/metrics.json"),
        figures=[kept(f"{ND_SUMMARY_OUT}/{layout.FIGURES.format(name=name)}") for name in ND_FIGURES],
    wildcard_constraints:
        model="|".join(P.models),
    params:
        job=job("study", "seed", "nondeterminism", "tracking", per_model=True),
        code=code("nondeterminism"),
        jobs=lambda wildcards, input: " ".join(shlex.quote(os.path.dirname(m)) for m in input.metrics),
        out=folder_of("metrics"),
    log:
        f"{LOGS}/nondeterminism/{{model}}/summary.log",
    benchmark:
        f"{LOGS}/benchmarks/nondeterminism_{{model}}_summary.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "nextlab nondeterminism --job {params.job:q} --threads {threads} --model {wildcards.model} --summary "
        "--jobs {params.jobs} --out {params.out:q} > {log:q} 2>&1"


ALL.extend(expand(rules.nondeterminism_summary.output.metrics, model=list(P.models)))
