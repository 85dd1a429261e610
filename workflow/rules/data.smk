from nextlab.data.user_corpus import corpus_files

# A user corpus's files are inputs: editing one, adding or removing one reruns the data stage.
USER_CORPUS = [str(f) for f in corpus_files(P.data.user_corpus.path)] if P.data.user_corpus else []


rule data:
    input:
        user_corpus=USER_CORPUS,
    output:
        world=kept(f"{RESULTS}/data/world.json"),
        train=kept(f"{RESULTS}/data/corpus/train.jsonl"),
        val=kept(f"{RESULTS}/data/corpus/val.jsonl"),
        qa=kept(f"{RESULTS}/data/qa.parquet"),
        stats=kept(f"{RESULTS}/data/stats.json"),
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
