from nextlab.data.user_corpus import corpus_files

# A user corpus's files are inputs: editing one, adding or removing one reruns the data stage.
USER_CORPUS = [str(f) for f in corpus_files(P.data.user_corpus.path)] if P.data.user_corpus else []


rule data:
    input:
        user_corpus=USER_CORPUS,
    output:
        world=kept(result(layout.WORLD)),
        train=kept(result(layout.CORPUS_TRAIN)),
        val=kept(result(layout.CORPUS_VAL)),
        qa=kept(result(layout.QA)),
        stats=kept(result(layout.DATA_STATS)),
    params:
        job=job("study", "seed", "data", "tracking"),
        code=code("data"),
        out=folder_of("stats"),
    log:
        f"{LOGS}/data.log",
    benchmark:
        f"{LOGS}/benchmarks/data.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "nextlab data --job {params.job:q} --threads {threads} --out {params.out:q} > {log:q} 2>&1"


ALL.append(rules.data.output.stats)
