# Agent: one job per model. The fine-tuned model learns to call lookup(name) from tool-use traces
# of the fine-tune split's questions, then answers the evaluation questions in the agent loop,
# beside the same fine-tuned model answering without the tool.

AGENT_OUT = result(layout.AGENT)


rule agent:
    input:
        sft=rules.sft.output.ckpt,
        tokenizer=rules.tokenize.output.tokenizer,
        world=rules.data.output.world,
        qa=rules.data.output.qa,
        data_stats=rules.data.output.stats,
    output:
        metrics=kept(f"{AGENT_OUT}/metrics.json"),
        ckpt=kept(f"{AGENT_OUT}/ckpt.pt"),
        episodes=kept(f"{AGENT_OUT}/episodes.parquet"),
        curve=kept(f"{AGENT_OUT}/curve.parquet"),
        provenance=kept(f"{AGENT_OUT}/provenance.json"),
    wildcard_constraints:
        model="|".join(P.models),
    params:
        job=job("study", "seed", "device", "data", "agent", "tracking", per_model=True),
        code=code("agent"),
        data=folder_of("data_stats", io="input"),
        tokenizer=folder_of("tokenizer", io="input"),
        out=folder_of("metrics"),
    log:
        f"{LOGS}/agent/{{model}}.log",
    benchmark:
        f"{LOGS}/benchmarks/agent_{{model}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "nextlab agent --job {params.job:q} --threads {threads} --model {wildcards.model} "
        "--sft {input.sft:q} --data {params.data:q} --tokenizer {params.tokenizer:q} "
        "--out {params.out:q} > {log:q} 2>&1"


ALL.extend(expand(rules.agent.output.metrics, model=list(P.models)))
