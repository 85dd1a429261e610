"""Figures of the nondeterminism study, drawn by the stage's own functions
(`nextlab.nondeterminism.figures`) from its per-job tables; this module adds the findings.

Each job (one dtype x attention path x thread count of a model) writes its tables under
`nondeterminism/<model>/<dtype>/<attention>/threads<k>/`; a figure reads every job of a model.
"""

from __future__ import annotations

from nextlab.report.registry import Drawn, Need, factor_values, figure
from nextlab.report.stats import Finding, proportion

JOB = "nondeterminism/{model}/{ndjob}"
# The columns each table must have for the figures and findings below.
COLUMNS = {
    "logits": ("path", "measure", "batch_size", "run", "steps", "steps_not_equal", "flips"),
    "completions": ("path", "batch_size", "run", "differs"),
    "unique": ("path", "prompt_id", "requests", "unique"),
    "timing": ("path", "measure", "batch_size", "run", "tokens", "seconds"),
}
FACTORS = ("dtype", "attention", "threads")


def _needs(*names: str) -> list[Need]:
    return [Need(f"{JOB}/{name}.parquet", COLUMNS[name] + FACTORS) for name in names]


def _tables(tables, model: str, *names: str) -> dict:
    """The named tables of every job of the model, concatenated (`summary.read_jobs`' shape)."""
    import pandas as pd

    jobs = factor_values(tables.study)["ndjob"]
    return {name: pd.concat([tables.parquet(f"{JOB.format(model=model, ndjob=job)}/{name}.parquet",
                                            COLUMNS[name] + FACTORS) for job in jobs], ignore_index=True)
            for name in names}


def _job(row) -> str:
    return f"{row['dtype']}/{row['attention']}/threads{row['threads']}"


@figure(
    "nondeterminism-rates",
    stage="nondeterminism",
    claim="nondeterminism",
    per=("model",),
    title="Greedy outputs against batch size",
    caption="The same prompts decoded greedily inside batches of each size, compared with each prompt "
    "decoded alone: share of teacher-forced steps whose logits are not bitwise equal, argmax flips per "
    "token, and free-running completions that differ. One line per dtype/attention job; dashed: the "
    "batch-invariant mode.",
    needs=_needs("logits", "completions"),
)
def rates(tables, model: str) -> Drawn:
    import pandas as pd

    from nextlab.nondeterminism.figures import rates_vs_batch

    data = _tables(tables, model, "logits", "completions")
    comp = data["completions"]
    first = comp[(comp["run"] == "first") & (comp["batch_size"] > 1)]
    rows, findings = [], []
    by_job: dict[tuple[str, str], list[Finding]] = {}
    for (job, path, b), group in first.assign(job=first.apply(_job, axis=1)).groupby(["job", "path", "batch_size"]):
        n, k = len(group), int(group["differs"].sum())
        f = proportion(f"nondeterminism.{model}.{job.replace('/', '.')}.{path}.differ_b{b}",
                       f"completions differing from alone, {job}, {path} kernels, batch {b}", k, n)
        rows.append({"job": job, "path": path, "batch_size": int(b), "differ": f.value, "lo": f.lo, "hi": f.hi,
                     "n": n})
        by_job.setdefault((job, path), []).append(f)
    for fs in by_job.values():
        findings.append(max(fs, key=lambda f: f.value))  # the batch size where most differ
    # Below the tokens: teacher-forced steps whose logits are not bitwise equal to the prompt alone.
    logits = data["logits"]
    forced = logits[(logits["run"] == "first") & (logits["path"] == "default") & (logits["batch_size"] > 1)]
    bits = None
    if len(forced) and int(forced["steps"].sum()) > 0:
        bits = proportion(f"nondeterminism.{model}.default.steps_not_equal",
                          "teacher-forced steps with logits not bitwise equal to alone (default kernels, "
                          "every job and batch size > 1)", int(forced["steps_not_equal"].sum()),
                          int(forced["steps"].sum()))
        findings.append(bits)
    default = [f for (job, path), fs in by_job.items() if path == "default" for f in fs]
    invariant = [f for (job, path), fs in by_job.items() if path == "invariant" for f in fs]
    changed = [f for f in default if f.lo > 0]
    if changed:
        worst = max(changed, key=lambda f: f.value)
        where = worst.label.split(", ", 1)[1]  # "<job>, <path> kernels, batch <b>"
        verdict = f"Supported: {where}: {worst.value:.1%} of completions differ from the prompt decoded alone."
        if invariant:
            verdict += (" The batch-invariant mode changed none." if all(f.value == 0 for f in invariant)
                        else " The batch-invariant mode did not remove every difference.")
    elif default:
        verdict = "Not shown at this scale: no free-running completion differed from the prompt decoded alone"
        verdict += (f", though {bits.value:.1%} of teacher-forced steps had logits not bitwise equal."
                    if bits is not None and bits.lo > 0 else ".")
    else:
        verdict = None
    table = pd.DataFrame(rows, columns=["job", "path", "batch_size", "differ", "lo", "hi", "n"])
    return Drawn(lambda path: rates_vs_batch(data, path), data=table, findings=findings, verdict=verdict)


@figure(
    "nondeterminism-unique",
    stage="nondeterminism",
    claim="nondeterminism",
    per=("model",),
    title="Distinct completions of one prompt over many requests",
    caption="Each repeated prompt is sent as many requests, each inside a batch of random size and "
    "neighbours; bars count its distinct greedy completions (1 = deterministic). Hatched: the "
    "batch-invariant mode.",
    needs=_needs("unique"),
)
def unique(tables, model: str) -> Drawn:
    from nextlab.nondeterminism.figures import unique_completions

    data = _tables(tables, model, "unique")
    frame = data["unique"]
    findings = []
    for (job, path), group in frame.assign(job=frame.apply(_job, axis=1)).groupby(["job", "path"]):
        findings.append(Finding(f"nondeterminism.{model}.{job.replace('/', '.')}.{path}.max_unique",
                                f"most distinct completions of one prompt, {job}, {path} kernels",
                                float(group["unique"].max()), n=int(group["requests"].max()), digits=0))
    return Drawn(lambda path: unique_completions(data, path), findings=findings,
                 note="Per prompt, the number of distinct answers over its requests (n = requests per prompt):")


@figure(
    "nondeterminism-cost",
    stage="nondeterminism",
    claim="nondeterminism",
    per=("model",),
    title="What batch invariance costs",
    caption="Free-running greedy decoding speed (tokens per second, wall clock) of the default kernels and "
    "the batch-invariant mode per batch size, and the slowdown of the invariant mode.",
    needs=_needs("timing"),
)
def cost(tables, model: str) -> Drawn:
    from nextlab.nondeterminism.figures import invariant_cost

    data = _tables(tables, model, "timing")
    return Drawn(lambda path: invariant_cost(data, path),
                 note="Speed is measured, not modelled: it varies with the machine's load.")
