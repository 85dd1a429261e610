# Supervised fine-tuning (one job per model), then post-training under each reward scheme and seed
# in params `posttrain:` (one job per model x scheme x seed, each starting from the SFT model; the
# calibrated scheme from the SFT model taught to state a confidence, rule sft_confidence).
# `none` is the SFT model itself: it has no post-training job.

include: "posttrain_helpers.smk"


rule sft:
    input:
        ckpt=rules.train.output.ckpt,
        tokenizer=rules.tokenize.output.tokenizer,
        qa=rules.data.output.qa,
        data_stats=rules.data.output.stats,
    output:
        ckpt=kept(f"{RESULTS}/models/{{model}}/sft/ckpt.pt"),
        metrics=kept(f"{RESULTS}/models/{{model}}/sft/metrics.json"),
        curve=kept(f"{RESULTS}/models/{{model}}/sft/curve.csv"),
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
        ckpt=kept(f"{RESULTS}/models/{{model}}/sft_confidence/ckpt.pt"),
        metrics=kept(f"{RESULTS}/models/{{model}}/sft_confidence/metrics.json"),
        curve=kept(f"{RESULTS}/models/{{model}}/sft_confidence/curve.csv"),
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


rule posttrain:
    input:
        init=posttrain_start,
        tokenizer=rules.tokenize.output.tokenizer,
        qa=rules.data.output.qa,
        world=rules.data.output.world,
        data_stats=rules.data.output.stats,
    output:
        ckpt=kept(f"{RESULTS}/models/{{model}}/posttrain/{{scheme}}/seed{{seed}}/ckpt.pt"),
        metrics=kept(f"{RESULTS}/models/{{model}}/posttrain/{{scheme}}/seed{{seed}}/metrics.json"),
        steps=kept(f"{RESULTS}/models/{{model}}/posttrain/{{scheme}}/seed{{seed}}/steps.csv"),
        timing=kept(f"{RESULTS}/models/{{model}}/posttrain/{{scheme}}/seed{{seed}}/timing.csv"),
    wildcard_constraints:
        model="|".join(P.models),
        scheme="|".join(re.escape(s) for s in TRAINED_SCHEMES) or "(?!)",
        seed=r"\d+",
    params:
        job=POSTTRAIN_JOB,
        code=code("posttrain"),
        data=folder_of("data_stats", io="input"),
        tokenizer=folder_of("tokenizer", io="input"),
        out=folder_of("metrics"),
    log:
        f"{LOGS}/posttrain/{{model}}/{{scheme}}/seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmarks/posttrain_{{model}}_{{scheme}}_seed{{seed}}.tsv"
    # Many small jobs side by side: one thread each (two threads per job would oversubscribe the cores).
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "nextlab posttrain --job {params.job:q} --threads {threads} --model {wildcards.model} "
        "--scheme {wildcards.scheme} --seed {wildcards.seed} --init {input.init:q} --data {params.data:q} "
        "--tokenizer {params.tokenizer:q} --out {params.out:q} > {log:q} 2>&1"


# The exactly on-policy control (params posttrain.invariant_control): a scheme post-trained again
# through the batch-invariant kernels, so that the sampler's and the trainer's log-probs are the same
# bits; the report sets it beside the default run of the same scheme and seed.
rule posttrain_invariant:
    input:
        init=posttrain_start,
        tokenizer=rules.tokenize.output.tokenizer,
        qa=rules.data.output.qa,
        world=rules.data.output.world,
        data_stats=rules.data.output.stats,
    output:
        ckpt=kept(f"{RESULTS}/models/{{model}}/posttrain_invariant/{{scheme}}/seed{{seed}}/ckpt.pt"),
        metrics=kept(f"{RESULTS}/models/{{model}}/posttrain_invariant/{{scheme}}/seed{{seed}}/metrics.json"),
        steps=kept(f"{RESULTS}/models/{{model}}/posttrain_invariant/{{scheme}}/seed{{seed}}/steps.csv"),
        timing=kept(f"{RESULTS}/models/{{model}}/posttrain_invariant/{{scheme}}/seed{{seed}}/timing.csv"),
    wildcard_constraints:
        model="|".join(P.models),
        scheme="|".join(re.escape(s) for s in INVARIANT_CONTROL) or "(?!)",
        seed=r"\d+",
    params:
        job=invariant_job,
        code=code("posttrain"),
        data=folder_of("data_stats", io="input"),
        tokenizer=folder_of("tokenizer", io="input"),
        out=folder_of("metrics"),
    log:
        f"{LOGS}/posttrain_invariant/{{model}}/{{scheme}}/seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmarks/posttrain_invariant_{{model}}_{{scheme}}_seed{{seed}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "nextlab posttrain --job {params.job:q} --threads {threads} --model {wildcards.model} "
        "--scheme {wildcards.scheme} --seed {wildcards.seed} --init {input.init:q} --data {params.data:q} "
        "--tokenizer {params.tokenizer:q} --out {params.out:q} > {log:q} 2>&1"


ALL.extend(expand(rules.sft.output.metrics, model=list(P.models)))
ALL.extend(
    expand(rules.posttrain_invariant.output.metrics, model=list(P.models), scheme=INVARIANT_CONTROL,
           seed=POSTTRAIN_SEEDS)
)
ALL.extend(
    expand(rules.posttrain.output.metrics, model=list(P.models), scheme=TRAINED_SCHEMES, seed=POSTTRAIN_SEEDS)
)
