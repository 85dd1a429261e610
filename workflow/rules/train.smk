# Pretraining: one job per model shape in params `models:` (the {model} wildcard).
# The job checkpoints to pretrain/last.pt, which is not a declared output, so Snakemake does not
# delete it before a rerun: an interrupted job resumes where it stopped.


rule train:
    input:
        tokenizer=rules.tokenize.output.tokenizer,
        train=rules.tokenize.output.train,
        val=rules.tokenize.output.val,
        tokens_stats=rules.tokenize.output.stats,
        world=rules.data.output.world,
        val_corpus=rules.data.output.val,
        qa=rules.data.output.qa,
        data_stats=rules.data.output.stats,
    output:
        ckpt=f"{RESULTS}/models/{{model}}/pretrain/ckpt.pt",
        metrics=f"{RESULTS}/models/{{model}}/pretrain/metrics.json",
        curve=f"{RESULTS}/models/{{model}}/pretrain/curve.csv",
        loss=f"{RESULTS}/models/{{model}}/pretrain/loss.png",
        facts=f"{RESULTS}/models/{{model}}/pretrain/facts.csv",
    wildcard_constraints:
        model="|".join(P.models),
    params:
        file=PARAMS,
        used=model_job_params("study", "seed", "train", "tracking"),
        tokens=folder_of("tokens_stats", io="input"),
        data=folder_of("data_stats", io="input"),
        out=folder_of("metrics"),
    log:
        f"{LOGS}/train/{{model}}.log",
    benchmark:
        f"{LOGS}/benchmarks/train_{{model}}.tsv"
    # Two threads fill this 2-core machine; Snakemake lowers it to --cores, profiles may raise it.
    threads: 2
    conda:
        CONDA_ENV
    shell:
        "nextlab train --params {params.file} --threads {threads} --model {wildcards.model} "
        "--tokens {params.tokens} --data {params.data} --out {params.out} > {log} 2>&1"


ALL.extend(expand(rules.train.output.metrics, model=list(P.models)))
