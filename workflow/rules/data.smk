rule data:
    output:
        world=f"{RESULTS}/data/world.json",
        train=f"{RESULTS}/data/corpus/train.jsonl",
        val=f"{RESULTS}/data/corpus/val.jsonl",
        qa=f"{RESULTS}/data/qa.parquet",
        stats=f"{RESULTS}/data/stats.json",
    params:
        file=PARAMS,
        used=rule_params("study", "seed", "data", "tracking"),
        out=folder_of("stats"),
    log:
        f"{LOGS}/data.log",
    benchmark:
        f"{LOGS}/benchmarks/data.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "nextlab data --params {params.file} --threads {threads} --out {params.out} > {log} 2>&1"


ALL.append(rules.data.output.stats)
