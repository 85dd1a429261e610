"""Figures of post-training: what each reward scheme did to the policy, step by step."""

from __future__ import annotations

import dataclasses

from nextlab import layout
from nextlab.config.posttrain import parse_scheme
from nextlab.report.registry import Drawn, Need, figure
from nextlab.report.stats import mean_interval
from nextlab.report.style import OUTCOME_COLORS, new_figure

STEPS = layout.POSTTRAIN_STEPS
STEP_COLUMNS = ("step", "reward", "correct_rate", "wrong_rate", "abstain_rate")


@figure(
    "posttrain-steps",
    stage="posttrain",
    claim="incentives",
    per=("model", "scheme", "seed"),
    when=lambda labels: parse_scheme(labels["scheme"]).trains,
    appendix=True,
    title="Post-training under a reward scheme",
    caption="Per policy-gradient step, the sampled answers of the step's questions: share correct, "
    "wrong (hallucinated) and abstained (left axis), and the mean reward (right axis, the scheme's "
    "own units).",
    needs=[Need(STEPS, STEP_COLUMNS)],
)
def steps(tables, model: str, scheme: str, seed: str) -> Drawn:
    table = tables.csv(STEPS.format(model=model, scheme=scheme, seed=seed), STEP_COLUMNS).sort_values("step")
    fig, ax = new_figure()
    for column, outcome in (("correct_rate", "correct"), ("wrong_rate", "wrong"), ("abstain_rate", "abstain")):
        ax.plot(table["step"], table[column], color=OUTCOME_COLORS[outcome], label=outcome)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("policy-gradient step")
    ax.set_ylabel("share of sampled answers")
    ax.grid(True)
    right = ax.twinx()
    right.plot(table["step"], table["reward"], color="black", ls="--", lw=1, label="reward")
    right.set_ylabel("mean reward")
    right.grid(False)
    right.spines["right"].set_visible(True)  # the report style hides right spines; this axis needs one
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="center right")
    ax.set_title(f"{scheme}, seed {seed}")

    tail = table[table["step"] > table["step"].max() * 0.75]  # the last quarter, after most change
    key = f"posttrain.{model}.{scheme}.seed{seed}"
    findings = [
        mean_interval(f"{key}.{column}_end", f"{what} over the last quarter of steps", tail[column].to_numpy(),
                      interval="95% CI over steps")
        for column, what in (("reward", "mean reward"), ("wrong_rate", "wrong-answer share"),
                             ("abstain_rate", "abstention share"))
    ]
    note = (f"Over the last quarter of post-training the policy abstained on {findings[2].value:.0%} and "
            f"answered wrongly on {findings[1].value:.0%} of its sampled answers.")
    return Drawn(fig, data=table[list(STEP_COLUMNS)], findings=findings, note=note)


# The exactly on-policy control (params posttrain.invariant_control): the same scheme and seed
# post-trained with the default kernels and through the batch-invariant ones.
KERNEL_RUNS = {"default": layout.fill(layout.POSTTRAIN, scheme="{control}"),
               "invariant": layout.fill(layout.POSTTRAIN_INVARIANT, scheme="{control}")}
ONPOLICY_COLUMNS = ("step", "reward", "correct_rate", "abstain_rate", "sampler_trainer_kl", "logprob_diff_max")
FINAL_KEYS = ("final_reward", "final_correct_rate", "final_wrong_rate", "final_abstain_rate")


def _kernel_runs(tables, model: str, control: str):
    """Per-step log (steps.csv joined with timing.csv) of every seed under both kernels, and each
    run's final metrics."""
    import pandas as pd

    frames, finals = [], []
    for kernels, folder in KERNEL_RUNS.items():
        for seed in tables.study.posttrain.seeds:
            where = folder.format(model=model, control=control, seed=seed)
            steps = tables.csv(f"{where}/steps.csv", ONPOLICY_COLUMNS)
            timing = tables.csv(f"{where}/timing.csv", ("step", "seconds"))
            frames.append(steps[list(ONPOLICY_COLUMNS)].merge(timing[["step", "seconds"]], on="step")
                          .assign(kernels=kernels, seed=seed))
            final = tables.json(f"{where}/metrics.json", FINAL_KEYS)
            finals.append({"kernels": kernels, "seed": seed, **{k: final[k] for k in FINAL_KEYS}})
    return pd.concat(frames, ignore_index=True), pd.DataFrame(finals)


@figure(
    "posttrain-onpolicy",
    stage="posttrain",
    claim="nondeterminism",
    per=("model", "control"),
    world=True,
    title="Post-training exactly on-policy",
    caption="The same scheme and seeds post-trained twice: with the default kernels, whose sampler (batched "
    "KV-cache decoding) and trainer (one teacher-forced pass) compute the answer's log-probabilities "
    "with other shapes, and through the batch-invariant kernels, where the two are the same bits. Left: "
    "mean reward per step (thin lines: seeds). Right: the sampler-trainer KL per answer token and the "
    "largest |log-prob difference| of a sampled token, per step (exactly 0 under invariant kernels, "
    "which a log axis cannot draw).",
    needs=[Need(f"{folder}/{name}", columns)
           for folder in KERNEL_RUNS.values()
           for name, columns in (("steps.csv", ONPOLICY_COLUMNS), ("timing.csv", ("step", "seconds")),
                                 ("metrics.json", FINAL_KEYS))],
)
def onpolicy(tables, model: str, control: str) -> Drawn:
    import numpy as np

    from nextlab.report.stats import Finding

    steps, finals = _kernel_runs(tables, model, control)
    fig, axes = new_figure(ncols=2)
    left, right = axes[0]
    colors = {"default": "tab:blue", "invariant": "tab:orange"}
    for kernels, runs in steps.groupby("kernels"):
        for _, run in runs.groupby("seed"):
            left.plot(run["step"], run["reward"], color=colors[kernels], lw=0.6, alpha=0.35,
                      ls="-" if kernels == "default" else "--")
        mean = runs.groupby("step")["reward"].mean()
        left.plot(mean.index, mean.to_numpy(), color=colors[kernels], lw=2, ls="-" if kernels == "default" else "--",
                  label=f"{kernels} kernels")
    left.set_xlabel("policy-gradient step")
    left.set_ylabel("mean reward")
    left.legend()
    left.set_title(control)
    default = steps[steps["kernels"] == "default"]
    # The exact KL of two nearly equal distributions can come out a rounding error below 0: drawn as |KL|.
    for column, style, what in (("sampler_trainer_kl", "-", "|sampler-trainer KL|"),
                                ("logprob_diff_max", ":", "max |Δ log-prob|")):
        per_step = default.assign(value=default[column].abs()).groupby("step")["value"].max()
        per_step = per_step[per_step > 0]
        right.plot(per_step.index, per_step.to_numpy(), color=colors["default"], ls=style, marker=".",
                   label=f"{what}, default kernels")
    right.set_yscale("log")
    right.set_xlabel("policy-gradient step")
    right.set_ylabel("per step (largest over seeds)")
    right.legend(loc="best", fontsize=8)
    invariant = steps[steps["kernels"] == "invariant"]
    exact = bool((invariant["sampler_trainer_kl"] == 0).all() and (invariant["logprob_diff_max"] == 0).all())
    right.set_title("invariant kernels: 0 at every step" if exact else "invariant kernels: NOT exactly 0",
                    fontsize=9)

    key = f"posttrain.{model}.{control}.onpolicy"
    findings = []
    for kernels, runs in (("default", default), ("invariant", invariant)):
        # KL can come out a rounding error below 0 (two nearly equal log-softmaxes): shown as is.
        findings.append(Finding(f"{key}.{kernels}.kl_mean", f"sampler-trainer KL per answer token, {kernels} "
                                f"kernels (mean over steps and seeds)", float(runs["sampler_trainer_kl"].mean()),
                                n=len(runs), digits=-3))
        findings.append(Finding(f"{key}.{kernels}.logprob_diff_max", f"largest |log-prob difference| of a sampled "
                                f"token, {kernels} kernels", float(runs["logprob_diff_max"].max()), n=len(runs),
                                digits=-3))
    exact_steps = Finding(f"{key}.invariant.exact_steps", "steps whose sampler and trainer log-probs were the "
                          "same bits, invariant kernels", float(((invariant["sampler_trainer_kl"] == 0)
                                                                 & (invariant["logprob_diff_max"] == 0)).sum()),
                          n=len(invariant), digits=0)
    findings.append(exact_steps)
    # How long the two runs of a seed stay on the same trajectory (the same rewards step by step).
    apart = []
    for seed, runs in steps.groupby("seed"):
        pair = runs.pivot(index="step", columns="kernels", values="reward").sort_index()
        differs = pair.index[pair["default"].to_numpy() != pair["invariant"].to_numpy()]
        apart.append(int(differs[0]) if len(differs) else np.nan)
    together = [a for a in apart if np.isfinite(a)]
    findings.append(Finding(f"{key}.seeds_diverged", "seeds whose two runs' rewards ever differ", float(len(together)),
                            n=len(apart), digits=0))
    if together:
        findings.append(Finding(f"{key}.first_divergent_step", "first step whose reward differs (earliest seed)",
                                float(min(together)), digits=0))
    paired = finals.pivot(index="seed", columns="kernels")
    deltas = {metric: mean_interval(f"{key}.delta_{metric}", f"{metric.replace('_', ' ')}, invariant minus default",
                                    (paired[(metric, "invariant")] - paired[(metric, "default")]).to_numpy(),
                                    interval="95% CI over seeds")
              for metric in FINAL_KEYS}
    findings += list(deltas.values())
    seconds = steps.groupby("kernels")["seconds"].mean()
    cost = float(seconds["invariant"] / seconds["default"])
    findings.append(Finding(f"time.{key}.step_cost", "seconds per step, invariant / default kernels", cost,
                            n=len(steps), digits=2))
    if findings[0].value < 0:
        findings[0] = dataclasses.replace(findings[0], label=findings[0].label + "; below 0 by rounding")
    diverged = (f"the two runs' rewards first differ at step {min(together)}" if together
                else f"the two runs' rewards agree at every one of the {int(steps['step'].max())} steps of each seed")
    note = (f"Under batch-invariant kernels the sampler and the trainer agreed bit for bit at "
            f"{int(exact_steps.value)} of {exact_steps.n} steps; with the default kernels the sampler-trainer KL "
            f"averaged {findings[0].value:.2g} per token{' (below 0 by rounding)' if findings[0].value < 0 else ''} "
            f"(largest |Δ log-prob| {findings[1].value:.2g}), and "
            f"{diverged}. Final reward, invariant minus default: {deltas['final_reward'].value:+.3f} over "
            f"{len(apart)} seed(s); a step costs {cost:.2f}x the default's.")
    table = steps.merge(finals, on=["kernels", "seed"], how="left")
    return Drawn(fig, data=table, findings=findings, note=note)
