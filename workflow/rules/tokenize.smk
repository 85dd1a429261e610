rule tokenize:
    input:
        train=rules.data.output.train,
        val=rules.data.output.val,
        stats=rules.data.output.stats,
    output:
        tokenizer=f"{RESULTS}/tokenizer/tokenizer.json",
        train=f"{RESULTS}/tokenizer/train.npy",
        val=f"{RESULTS}/tokenizer/val.npy",
        stats=f"{RESULTS}/tokenizer/stats.json",
    params:
        file=PARAMS,
        used=rule_params("study", "seed", "tokenizer", "tracking"),
        data=folder_of("stats", io="input"),
        out=folder_of("stats"),
    log:
        f"{LOGS}/tokenize.log",
    benchmark:
        f"{LOGS}/benchmarks/tokenize.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "nextlab tokenize --params {params.file} --threads {threads} --data {params.data} "
        "--out {params.out} > {log} 2>&1"


ALL.append(rules.tokenize.output.stats)
