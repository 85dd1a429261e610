# Pretraining: one job per model shape in params `models:` (the {model} wildcard).
# The job checkpoints to pretrain/last.pt, which is not a declared output, so Snakemake does not
# delete it before a rerun: an interrupted job resumes where it stopped. With a synthetic world
# it also probes the facts the model learned (facts.csv); a replacing user corpus has none.

import shlex

TRAIN_OUT = result(layout.PRETRAIN)
TRAIN_FILES = {"ckpt": "ckpt.pt", "metrics": "metrics.json", "curve": "curve.csv", "loss": "loss.png"}
if P.data.synthetic:
    TRAIN_FILES["facts"] = "facts.csv"
TRAIN_LAUNCH = (
    f"torchrun --standalone --nproc_per_node {P.train.processes} -m nextlab"
    if P.train.processes > 1
    else "nextlab"
)


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
        **{key: kept(f"{TRAIN_OUT}/{name}") for key, name in TRAIN_FILES.items()},
    wildcard_constraints:
        model="|".join(P.models),
    params:
        job=job("study", "seed", "device", "train", "tracking", per_model=True),
        code=code("train"),
        tokens=folder_of("tokens_stats", io="input"),
        probes=lambda wildcards, input: f"--data {shlex.quote(os.path.dirname(input.data_stats))}"
        if P.data.synthetic
        else "",
        out=folder_of("metrics"),
        # train.processes > 1: data-parallel under torchrun, the job's threads shared among them.
        launch=TRAIN_LAUNCH,
        threads_each=lambda wildcards, threads: max(1, threads // P.train.processes),
    log:
        f"{LOGS}/train/{{model}}.log",
    benchmark:
        f"{LOGS}/benchmarks/train_{{model}}.tsv"
    # Two threads fill this 2-core machine; Snakemake lowers it to --cores, profiles may raise it.
    threads: max(2, P.train.processes)
    conda:
        CONDA_ENV
    shell:
        "{params.launch} train --job {params.job:q} --threads {params.threads_each} --model {wildcards.model} "
        "--tokens {params.tokens:q} {params.probes} --out {params.out:q} > {log:q} 2>&1"


ALL.extend(expand(rules.train.output.metrics, model=list(P.models)))
