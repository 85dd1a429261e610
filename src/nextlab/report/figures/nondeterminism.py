"""Figures of the nondeterminism study, drawn by the stage's own functions
(`nextlab.nondeterminism.figures`) from its per-job tables; this module adds the findings.

Each job (one dtype x attention path x thread count of a model) writes its tables under
`nondeterminism/<model>/<dtype>/<attention>/threads<k>/`; a figure reads every job of a model.
"""

from __future__ import annotations

from nextlab import layout
from nextlab.report.registry import Drawn, Need, factor_values, figure
from nextlab.report.stats import Finding, proportion

JOB = layout.NONDETERMINISM
# The columns each table must have for the figures and findings below.
COLUMNS = {
    "logits": ("path", "measure", "batch_size", "run", "steps", "steps_not_equal", "flips"),
    "completions": ("path", "batch_size", "run", "differs", "first_divergence"),
    "unique": ("path", "prompt_id", "requests", "unique"),
    "timing": ("path", "measure", "batch_size", "run", "tokens", "seconds"),
    "steps": ("measure", "batch_size", "margin", "max_abs_diff", "flip"),
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
    return layout.nd_job(row["dtype"], row["attention"], row["threads"])


def power_note(first) -> str | None:
    """The power calculation behind the design, from the completions it ran (batch size > 1).

    Under exact determinism no completion changes, so one change decides; a rate of 1% shows at
    least once in n completions with probability 1 - 0.99^n (299 give 95%).
    """
    from nextlab.nondeterminism.metrics import DETECT_RATE
    from nextlab.nondeterminism.power import completions_for_power, detection_power

    default = first[first["path"] == "default"]
    if not len(default):
        return None
    per = default.groupby(["dtype", "batch_size"]).size()
    pooled = default.groupby("batch_size").size()
    need = completions_for_power(DETECT_RATE, 0.95)
    return (f"Power: a {DETECT_RATE:.0%} rate of changed completions shows at least once in n completions with "
            f"probability 1 - {1 - DETECT_RATE:g}^n ({need} give 95%). Per dtype and batch size n = "
            f"{int(per.min())}-{int(per.max())} (power {detection_power(DETECT_RATE, int(per.min())):.0%}); "
            f"pooled over dtypes n = {int(pooled.min())} (power {detection_power(DETECT_RATE, int(pooled.min())):.0%}).")


def verdict(completions, steps) -> tuple[str | None, list[Finding]]:
    """The claim's verdict from changed completions (batch size > 1, run `first`) and teacher-forced
    steps, per dtype and batch size, and per dtype over every batch size > 1 (the control's claim,
    no change at any batch size, pools them): default kernels pooled over the dtype's jobs against
    the batch-invariant control of the same dtype (Wilson 95% intervals).

    Supported only where the default path's interval lies wholly above the control's and is not
    degenerate (it excludes 0, and the control was measured). Otherwise the verdict gives the
    exact one-sided 95% bound on the changed-completion rate and the flip rate the logit drift
    predicts beside the observed one, and says why it is not supported.
    """
    from nextlab.nondeterminism.power import predicted_flips, upper_bound

    findings: list[Finding] = []
    if not len(completions):
        return None, findings
    first = completions[(completions["run"] == "first") & (completions["batch_size"] > 1)]
    best = None  # the separated (dtype, batch) with the highest default rate
    overlapping = []
    groups = [((dtype, b), rows) for (dtype, b), rows in first.groupby(["dtype", "batch_size"])]
    groups += [((dtype, "> 1"), rows) for dtype, rows in first.groupby("dtype")]
    for (dtype, b), rows in groups:
        default, control = rows[rows["path"] == "default"], rows[rows["path"] == "invariant"]
        if not len(default):
            continue
        tag = "all" if b == "> 1" else b
        d = proportion(f"nondeterminism.{dtype}.differ_b{tag}", f"{dtype}, batch {b}: completions that differ "
                       "from alone (default kernels, every job)", int(default["differs"].sum()), len(default))
        findings.append(d)
        c = None
        if len(control):
            c = proportion(f"nondeterminism.{dtype}.invariant.differ_b{tag}", f"{dtype}, batch {b}: the same, "
                           "batch-invariant kernels", int(control["differs"].sum()), len(control))
            findings.append(c)
        if c is not None and d.lo > 0 and d.above(c):
            # a single batch size that separates on its own outranks the pooled comparison
            if best is None or (b != "> 1", d.value) > (best[2], best[0].value):
                best = (d, c, b != "> 1")
        elif d.lo > 0:
            overlapping.append((d, c))
    default_all = first[first["path"] == "default"]
    n, k = len(default_all), int(default_all["differs"].sum())
    bound = upper_bound(k, n) if n else None
    drift = ""
    forced = steps[steps["measure"] == "decode"] if len(steps) else steps
    if len(forced):
        p = predicted_flips(forced["margin"].to_numpy(), forced["max_abs_diff"].to_numpy())
        flips = int(forced["flip"].sum())
        drift = (f" Teacher forced with the cache, the logit drift predicted {p.predicted_rate:.3%} of "
                 f"{p.steps} steps to flip (margin below the drift; at most {p.possible_rate:.3%} could), "
                 f"{flips / p.steps:.3%} did (95% upper bound {upper_bound(flips, p.steps):.3%}).")
    if best is not None:
        d, c, _ = best
        others = ""
        for dtype, rows in default_all.groupby("dtype"):
            if dtype != d.key.split(".")[1]:
                kk, nn = int(rows["differs"].sum()), len(rows)
                others += (f" {dtype}: {kk} of {nn} changed (below {upper_bound(kk, nn):.2%}, exact one-sided "
                           "95% bound)." if kk == 0 else f" {dtype}: {kk} of {nn} changed, not separated.")
        return (f"Supported: {d.label.split(':')[0]}: {d.value:.1%} [{d.lo:.1%}, {d.hi:.1%}] of "
                f"{d.n} completions differ from the prompt alone, against {c.value:.1%} "
                f"[{c.lo:.1%}, {c.hi:.1%}] with batch-invariant kernels." + others + drift), findings
    if n == 0:
        return None, findings
    if overlapping:
        d, c = max(overlapping, key=lambda pair: pair[0].value)
        why = (f"{d.label.split(':')[0]} changed {d.value:.1%} [{d.lo:.1%}, {d.hi:.1%}] of {d.n} completions, "
               + ("but no batch-invariant control was run" if c is None else
                  f"but the batch-invariant control's interval [{c.lo:.1%}, {c.hi:.1%}] (n = {c.n}) overlaps it"))
        return f"Not resolved: {why}; more completions per batch size would separate them." + drift, findings
    return (f"Not shown: {k} of {n} free-running completions changed; the rate is below {bound:.2%} "
            f"(exact one-sided 95% bound) at every batch size pooled." + drift), findings


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
    needs=_needs("logits", "completions", "steps"),
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
    steps = _tables(tables, model, "steps")["steps"]
    said, pooled = verdict(comp, steps)
    findings += pooled
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
    if said is not None and bits is not None and bits.lo > 0:
        said += f" {bits.value:.1%} of teacher-forced steps had logits not bitwise equal to alone."
    table = pd.DataFrame(rows, columns=["job", "path", "batch_size", "differ", "lo", "hi", "n"])
    return Drawn(lambda path: rates_vs_batch(data, path), data=table, findings=findings, verdict=said,
                 note=power_note(first))


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
    "nondeterminism-divergence",
    stage="nondeterminism",
    claim="nondeterminism",
    per=("model",),
    title="Where changed completions part from the alone one",
    caption="Free-running greedy completions (default kernels, every batch size > 1, padding and job, and the "
    "repeated requests) that differ from the prompt's completion decoded alone, by the token position of "
    "the first token that differs. One line per dtype/attention job.",
    needs=_needs("completions"),
)
def divergence(tables, model: str) -> Drawn:
    import numpy as np

    from nextlab.nondeterminism.figures import first_divergence

    data = _tables(tables, model, "completions")
    frame = data["completions"]
    changed = frame[(frame["path"] == "default") & frame["differs"] & (frame["batch_size"] > 1)]
    findings = []
    for dtype, rows in changed.groupby("dtype"):
        where = rows["first_divergence"].to_numpy(float)
        key = f"nondeterminism.{model}.{dtype}.first_divergence"
        findings.append(Finding(f"{key}_median", f"{dtype}: median token position of the first divergence",
                                float(np.median(where)), n=len(where), digits=0))
        findings.append(Finding(f"{key}_min", f"{dtype}: earliest first divergence", float(where.min()), digits=0))
        findings.append(Finding(f"{key}_late_share", f"{dtype}: share diverging at token 16 or later",
                                float((where >= 16).mean()), n=len(where)))
    note = ("No completion differed from its alone run, so there is no divergence to place." if changed.empty else
            "Where batching changed a completion, the first differing token (position 0 is the first new token):")
    return Drawn(lambda path: first_divergence(data, path), findings=findings, note=note)


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
    from nextlab.nondeterminism.metrics import decoding_speed

    data = _tables(tables, model, "timing")
    timing = data["timing"]
    findings = []
    for job, rows in timing.assign(job=timing.apply(_job, axis=1)).groupby("job"):
        speed = decoding_speed(rows)
        if "invariant" not in speed.index.get_level_values(0):
            continue
        for b, value in (speed["default"] / speed["invariant"]).dropna().items():
            findings.append(Finding(f"time.nondeterminism.{model}.{job.replace('/', '.')}.invariant_slowdown_b{b}",
                                    f"{job}, batch {b}: invariant decoding time / default", float(value), digits=2))
    return Drawn(lambda path: invariant_cost(data, path), findings=findings,
                 note="Speed is measured, not modelled: it varies with the machine's load (the goal is at most "
                      "1.3x at every batch size; `benchmarks/batch_invariance.py` measures it apart from the study).")
