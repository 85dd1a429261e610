# Evaluation: one job per model x scheme x seed (`none`, the SFT model, once as seed 0), then one
# summary per model over every scheme and seed (intervals across seeds, the figures).
# Its helpers (EVAL_RUNS, EVALUATE_JOB, ...) are in posttrain_helpers.smk.

include: "posttrain_helpers.smk"

EVALUATE_OUT = result(layout.EVALUATE)
EVALUATE_SUMMARY_OUT = result(layout.EVALUATE_SUMMARY)


rule evaluate:
    input:
        ckpt=evaluated_checkpoint,
        tokenizer=rules.tokenize.output.tokenizer,
        qa=rules.data.output.qa,
        world=rules.data.output.world,
        data_stats=rules.data.output.stats,
    output:
        answers=kept(result(layout.EVALUATE_ANSWERS)),
        metrics=kept(f"{EVALUATE_OUT}/metrics.json"),
    wildcard_constraints:
        model="|".join(P.models),
        scheme="|".join(re.escape(s) for s in SCHEMES),
        seed=r"\d+",
    params:
        job=EVALUATE_JOB,
        code=code("evaluate"),
        data=folder_of("data_stats", io="input"),
        tokenizer=folder_of("tokenizer", io="input"),
        out=folder_of("metrics"),
    log:
        f"{LOGS}/evaluate/{{model}}/{{scheme}}/seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmarks/evaluate_{{model}}_{{scheme}}_seed{{seed}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "nextlab evaluate --job {params.job:q} --threads {threads} --model {wildcards.model} "
        "--scheme {wildcards.scheme} --seed {wildcards.seed} --ckpt {input.ckpt:q} --data {params.data:q} "
        "--tokenizer {params.tokenizer:q} --out {params.out:q} > {log:q} 2>&1"


rule evaluate_summary:
    input:
        answers=model_answers,
        data_stats=rules.data.output.stats,
    output:
        metrics=kept(f"{EVALUATE_SUMMARY_OUT}/metrics.json"),
        summary=kept(result(layout.EVALUATE_SUMMARY_TABLE)),
        answers=kept(result(layout.EVALUATE_SUMMARY_ANSWERS)),
        figures=[kept(f"{EVALUATE_SUMMARY_OUT}/{layout.FIGURES.format(name=name)}") for name in SUMMARY_FIGURES],
    wildcard_constraints:
        model="|".join(P.models),
    params:
        job=EVALUATE_JOB,
        code=code("evaluate"),
        data=folder_of("data_stats", io="input"),
        out=folder_of("metrics"),
    log:
        f"{LOGS}/evaluate/{{model}}/summary.log",
    benchmark:
        f"{LOGS}/benchmarks/evaluate_{{model}}_summary.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "nextlab evaluate --job {params.job:q} --threads {threads} --summary --answers {input.answers:q} "
        "--data {params.data:q} --out {params.out:q} > {log:q} 2>&1"


ALL.extend(expand(rules.evaluate_summary.output.metrics, model=list(P.models)))
