# Positions: one job per model and variant of params `positions.variants` (learned, rotary, no
# positions, order-blind), each pretrained from scratch on the study's tokens and probed for fact
# recall and word order (does "A mentored B." beat "B mentored A."?).

from nextlab.config.positions import TABLES as POSITIONS_TABLES

POSITIONS_OUT = result(layout.POSITIONS)


rule positions:
    input:
        tokenizer=rules.tokenize.output.tokenizer,
        train=rules.tokenize.output.train,
        val=rules.tokenize.output.val,
        tokens_stats=rules.tokenize.output.stats,
        world=rules.data.output.world,
        data_stats=rules.data.output.stats,
    output:
        metrics=kept(f"{POSITIONS_OUT}/metrics.json"),
        ckpt=kept(f"{POSITIONS_OUT}/ckpt.pt"),
        tables=[kept(f"{POSITIONS_OUT}/{name}.parquet") for name in POSITIONS_TABLES],
        provenance=kept(f"{POSITIONS_OUT}/provenance.json"),
    wildcard_constraints:
        model="|".join(P.models),
        variant="|".join(P.positions.variants),
    params:
        # The variant list names jobs; one job's result does not depend on which others run.
        job=job("study", "seed", "device", "data", "train", "positions", "tracking", per_model=True,
                withhold={"positions": ["variants"]}),
        code=code("positions"),
        tokens=folder_of("tokens_stats", io="input"),
        data=folder_of("data_stats", io="input"),
        out=folder_of("metrics"),
    log:
        f"{LOGS}/positions/{{model}}/{{variant}}.log",
    benchmark:
        f"{LOGS}/benchmarks/positions_{{model}}_{{variant}}.tsv"
    # One thread each: two variants side by side use this machine better than one on two threads.
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "nextlab positions --job {params.job:q} --threads {threads} --model {wildcards.model} "
        "--variant {wildcards.variant} --tokens {params.tokens:q} --data {params.data:q} "
        "--out {params.out:q} > {log:q} 2>&1"


ALL.extend(expand(rules.positions.output.metrics, model=list(P.models), variant=list(P.positions.variants)))
