"""Figures of the synthetic world: how often each fact appears in the training corpus."""

from __future__ import annotations

from nextlab import layout
from nextlab.report.registry import Drawn, Need, figure
from nextlab.report.stats import Finding
from nextlab.report.style import COLORS, new_figure

QA = layout.QA
QA_COLUMNS = ("question_id", "mentions", "split", "seen")


@figure(
    "data-mentions",
    stage="data",
    claim="frequency",
    title="Facts by mention count",
    caption="Number of facts (one person's attribute) in the world by how many times their biography "
    "appears in the pretraining corpus (k), stacked by the split that later asks about them. "
    "Never-seen names (k = 0) are in no biography.",
    needs=[Need(QA, QA_COLUMNS), Need(layout.DATA_STATS, ("singleton_rate",))],
    world=True,
)
def mentions(tables) -> Drawn:
    import pandas as pd

    qa = tables.parquet(QA, QA_COLUMNS)
    counts = qa.groupby(["mentions", "split"]).size().unstack("split", fill_value=0).sort_index()
    splits = [s for s in ("finetune", "rl", "calibration", "eval") if s in counts.columns]
    splits += [s for s in counts.columns if s not in splits]
    fig, ax = new_figure()
    bottom = pd.Series(0, index=counts.index)
    positions = range(len(counts.index))
    for i, split in enumerate(splits):
        ax.bar(positions, counts[split], bottom=bottom, label=split, color=COLORS[i % len(COLORS)])
        bottom = bottom + counts[split]
    ax.set_xticks(list(positions), [str(k) for k in counts.index])
    ax.set_xlabel("mentions of the fact in the pretraining corpus (k)")
    ax.set_ylabel("facts (count)")
    ax.grid(axis="y")
    ax.legend(title="asked in split")

    seen = qa[qa["seen"]]
    singletons = int((seen["mentions"] == 1).sum())
    stated = tables.json(layout.DATA_STATS, ("singleton_rate",))["singleton_rate"]
    findings = [
        Finding("data.singleton_rate", "share of seen facts mentioned exactly once (singleton rate)",
                singletons / len(seen) if len(seen) else float("nan"), n=len(seen)),
        Finding("data.facts_seen", "facts in the corpus", float(len(seen)), digits=0),
        Finding("data.facts_unseen", "questions about never-seen names", float((~qa["seen"]).sum()), digits=0),
    ]
    note = (f"By design, {singletons} of the {len(seen)} facts in the corpus appear exactly once "
               "(k = 1): the recall figures below test what a single reading leaves behind.")
    ax.set_title(f"singleton rate {stated:.2f}")
    data = counts[splits].reset_index()
    data.insert(1, "facts", counts[splits].sum(axis=1).to_numpy())  # mentions, facts, then one column per split
    return Drawn(fig, data=data, findings=findings, note=note)
