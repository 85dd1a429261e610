# Supervised fine-tuning: one job per model, from its pretrained weights, on the fine-tune split's
# questions; and the calibrated scheme's start, the SFT model taught to state a confidence.

include: "posttrain_helpers.smk"

SFT_OUT = result(layout.SFT)
SFT_CONFIDENCE_OUT = result(layout.SFT_CONFIDENCE)
SFT_JOB = job("study", "seed", "device", "sft", "tracking", per_model=True)


rule sft:
    input:
        ckpt=rules.train.output.ckpt,
        tokenizer=rules.tokenize.output.tokenizer,
        qa=rules.data.output.qa,
        data_stats=rules.data.output.stats,
    output:
        ckpt=kept(f"{SFT_OUT}/ckpt.pt"),
        metrics=kept(f"{SFT_OUT}/metrics.json"),
        curve=kept(f"{SFT_OUT}/curve.csv"),
    wildcard_constraints:
        model="|".join(P.models),
    params:
        job=SFT_JOB,
        code=code("sft"),
        data=folder_of("data_stats", io="input"),
        tokenizer=folder_of("tokenizer", io="input"),
        out=folder_of("metrics"),
    log:
        f"{LOGS}/sft/{{model}}.log",
    benchmark:
        f"{LOGS}/benchmarks/sft_{{model}}.tsv"
    # Every post-training job waits for this one: let it use both cores.
    threads: 2
    conda:
        CONDA_ENV
    shell:
        "nextlab sft --job {params.job:q} --threads {threads} --model {wildcards.model} "
        "--init {input.ckpt:q} --data {params.data:q} --tokenizer {params.tokenizer:q} "
        "--out {params.out:q} > {log:q} 2>&1"


# The calibrated scheme's start: the SFT model taught to state a confidence (built only when a
# calibrated scheme is in the params, since only its post-training jobs ask for it).
rule sft_confidence:
    input:
        ckpt=rules.sft.output.ckpt,
        tokenizer=rules.tokenize.output.tokenizer,
        qa=rules.data.output.qa,
        data_stats=rules.data.output.stats,
    output:
        ckpt=kept(f"{SFT_CONFIDENCE_OUT}/ckpt.pt"),
        metrics=kept(f"{SFT_CONFIDENCE_OUT}/metrics.json"),
        curve=kept(f"{SFT_CONFIDENCE_OUT}/curve.csv"),
    wildcard_constraints:
        model="|".join(P.models),
    params:
        job=POSTTRAIN_JOB,
        code=code("sft"),
        data=folder_of("data_stats", io="input"),
        tokenizer=folder_of("tokenizer", io="input"),
        out=folder_of("metrics"),
    log:
        f"{LOGS}/sft/{{model}}_confidence.log",
    benchmark:
        f"{LOGS}/benchmarks/sft_confidence_{{model}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "nextlab sft --confidence --job {params.job:q} --threads {threads} --model {wildcards.model} "
        "--init {input.ckpt:q} --data {params.data:q} --tokenizer {params.tokenizer:q} "
        "--out {params.out:q} > {log:q} 2>&1"


ALL.extend(expand(rules.sft.output.metrics, model=list(P.models)))
