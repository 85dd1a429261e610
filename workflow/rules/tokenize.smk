rule tokenize:
    input:
        train=rules.data.output.train,
        val=rules.data.output.val,
        stats=rules.data.output.stats,
    output:
        tokenizer=kept(result(layout.TOKENIZER_FILE)),
        train=kept(result(layout.TOKENS_TRAIN)),
        val=kept(result(layout.TOKENS_VAL)),
        stats=kept(result(layout.TOKENIZER_STATS)),
    params:
        job=job("study", "seed", "tokenizer", "tracking"),
        code=code("tokenize"),
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
        "nextlab tokenize --job {params.job:q} --threads {threads} --data {params.data:q} "
        "--out {params.out:q} > {log:q} 2>&1"


ALL.append(rules.tokenize.output.stats)
