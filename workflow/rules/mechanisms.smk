# Mechanisms: one job per model on its trained weights: each MLP and attention head ablated in
# turn (fact recall, the other tokens' loss), the roles of the heads at a question's answer
# position, and decoding strategies on questions and generated biographies.

from nextlab.config.mechanisms import TABLES as MECHANISMS_TABLES

MECHANISMS_OUT = result(layout.MECHANISMS)


rule mechanisms:
    input:
        pretrain=rules.train.output.ckpt,
        sft=rules.sft.output.ckpt,
        tokenizer=rules.tokenize.output.tokenizer,
        world=rules.data.output.world,
        val=rules.data.output.val,
        qa=rules.data.output.qa,
        data_stats=rules.data.output.stats,
    output:
        metrics=kept(f"{MECHANISMS_OUT}/metrics.json"),
        tables=[kept(f"{MECHANISMS_OUT}/{name}.parquet") for name in MECHANISMS_TABLES],
        provenance=kept(f"{MECHANISMS_OUT}/provenance.json"),
    wildcard_constraints:
        model="|".join(P.models),
    params:
        job=job("study", "seed", "device", "data", "evaluate", "mechanisms", "tracking", per_model=True),
        code=code("mechanisms"),
        data=folder_of("data_stats", io="input"),
        tokenizer=folder_of("tokenizer", io="input"),
        out=folder_of("metrics"),
    log:
        f"{LOGS}/mechanisms/{{model}}.log",
    benchmark:
        f"{LOGS}/benchmarks/mechanisms_{{model}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "nextlab mechanisms --job {params.job:q} --threads {threads} --model {wildcards.model} "
        "--pretrain {input.pretrain:q} --sft {input.sft:q} --data {params.data:q} "
        "--tokenizer {params.tokenizer:q} --out {params.out:q} > {log:q} 2>&1"


ALL.extend(expand(rules.mechanisms.output.metrics, model=list(P.models)))
