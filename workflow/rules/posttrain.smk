# Post-training under each reward scheme and seed in params `posttrain:` (one job per model x
# scheme x seed, each starting from the SFT model of sft.smk; the calibrated scheme from the SFT
# model taught to state a confidence, rule sft_confidence). `none` is the SFT model itself: it has
# no post-training job.

include: "posttrain_helpers.smk"

POSTTRAIN_OUT = result(layout.POSTTRAIN)
POSTTRAIN_INVARIANT_OUT = result(layout.POSTTRAIN_INVARIANT)


rule posttrain:
    input:
        init=posttrain_start,
        tokenizer=rules.tokenize.output.tokenizer,
        qa=rules.data.output.qa,
        world=rules.data.output.world,
        data_stats=rules.data.output.stats,
    output:
        ckpt=kept(f"{POSTTRAIN_OUT}/ckpt.pt"),
        metrics=kept(f"{POSTTRAIN_OUT}/metrics.json"),
        steps=kept(f"{POSTTRAIN_OUT}/steps.csv"),
        timing=kept(f"{POSTTRAIN_OUT}/timing.csv"),
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
        ckpt=kept(f"{POSTTRAIN_INVARIANT_OUT}/ckpt.pt"),
        metrics=kept(f"{POSTTRAIN_INVARIANT_OUT}/metrics.json"),
        steps=kept(f"{POSTTRAIN_INVARIANT_OUT}/steps.csv"),
        timing=kept(f"{POSTTRAIN_INVARIANT_OUT}/timing.csv"),
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


ALL.extend(
    expand(rules.posttrain_invariant.output.metrics, model=list(P.models), scheme=INVARIANT_CONTROL,
           seed=POSTTRAIN_SEEDS)
)
ALL.extend(
    expand(rules.posttrain.output.metrics, model=list(P.models), scheme=TRAINED_SCHEMES, seed=POSTTRAIN_SEEDS)
)
