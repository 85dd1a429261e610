# Nondeterminism across batch sizes: one job per model x dtype x attention path x thread count
# (each sweeps batch sizes, padding sides and the KV cache itself), then one summary per model
# (figures and a flat metrics.json over its jobs).

from nextlab.config.nondeterminism import FIGURES as ND_FIGURES, TABLES as ND_TABLES

ND = P.nondeterminism
ND_JOBS = [(d, a, t) for d in ND.dtypes for a in ND.attention for t in ND.threads]


rule nondeterminism:
    input:
        # the SFT model by default (it answers the QA prompts), or the pretrained one
        ckpt=lambda wildcards: (rules.sft if ND.checkpoint == "sft" else rules.train).output.ckpt.format(
            model=wildcards.model
        ),
        tokenizer=rules.tokenize.output.tokenizer,
        qa=rules.data.output.qa,
        data_stats=rules.data.output.stats,
    output:
        metrics=f"{RESULTS}/nondeterminism/{{model}}/{{dtype}}/{{attention}}/threads{{threads}}/metrics.json",
        tables=[
            f"{RESULTS}/nondeterminism/{{model}}/{{dtype}}/{{attention}}/threads{{threads}}/{name}.parquet"
            for name in ND_TABLES
        ],
        env=f"{RESULTS}/nondeterminism/{{model}}/{{dtype}}/{{attention}}/threads{{threads}}/env.json",
        provenance=f"{RESULTS}/nondeterminism/{{model}}/{{dtype}}/{{attention}}/threads{{threads}}/provenance.json",
    wildcard_constraints:
        model="|".join(P.models),
        dtype="|".join(ND.dtypes),
        attention="|".join(ND.attention),
        threads=r"\d+",
    params:
        file=PARAMS,
        used=model_job_params("study", "seed", "nondeterminism", "tracking", device=True),
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
        "nextlab nondeterminism --params {params.file} --threads {wildcards.threads} --model {wildcards.model} "
        "--dtype {wildcards.dtype} --attention {wildcards.attention} --ckpt {input.ckpt} "
        "--data {params.data} --tokenizer {params.tokenizer} --out {params.out} > {log} 2>&1"


rule nondeterminism_summary:
    input:
        metrics=lambda wildcards: [
            rules.nondeterminism.output.metrics.format(model=wildcards.model, dtype=d, attention=a, threads=t)
            for d, a, t in ND_JOBS
        ],
        tables=lambda wildcards: [
            f"{RESULTS}/nondeterminism/{wildcards.model}/{d}/{a}/threads{t}/{name}"
            for d, a, t in ND_JOBS
            for name in [f"{table}.parquet" for table in ND_TABLES] + ["env.json", "provenance.json"]
        ],
    output:
        metrics=f"{RESULTS}/nondeterminism/{{model}}/summary/metrics.json",
        figures=[
            f"{RESULTS}/nondeterminism/{{model}}/summary/figures/{name}.png"
            for name in ND_FIGURES
        ],
    wildcard_constraints:
        model="|".join(P.models),
    params:
        file=PARAMS,
        used=rule_params("study", "nondeterminism", "tracking"),
        jobs=lambda wildcards, input: " ".join(os.path.dirname(m) for m in input.metrics),
        out=folder_of("metrics"),
    log:
        f"{LOGS}/nondeterminism/{{model}}/summary.log",
    benchmark:
        f"{LOGS}/benchmarks/nondeterminism_{{model}}_summary.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "nextlab nondeterminism --params {params.file} --threads {threads} --model {wildcards.model} --summary "
        "--jobs {params.jobs} --out {params.out} > {log} 2>&1"


ALL.extend(expand(rules.nondeterminism_summary.output.metrics, model=list(P.models)))
