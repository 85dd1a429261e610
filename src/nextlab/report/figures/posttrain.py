"""Figures of post-training: what each reward scheme did to the policy, step by step."""

from __future__ import annotations

from nextlab.config.posttrain import parse_scheme
from nextlab.report.registry import Drawn, Need, figure
from nextlab.report.stats import mean_interval
from nextlab.report.style import OUTCOME_COLORS, new_figure

STEPS = "models/{model}/posttrain/{scheme}/seed{seed}/steps.csv"
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
