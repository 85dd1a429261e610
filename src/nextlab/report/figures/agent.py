"""The figure of the agent stage: the same fine-tuned model with and without a lookup tool, drawn
from the job's episodes under `agent/<model>/`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextlab import layout
from nextlab.report.registry import Drawn, Need, figure
from nextlab.report.stats import Finding, compare, mean_interval, proportion
from nextlab.report.style import COLORS, OUTCOME_COLORS, new_figure

JOB = layout.AGENT
EPISODES = ("condition", "question_id", "mentions", "seen", "grade", "tool_calls", "bad_calls", "hit_limit")
CONDITION_LABELS = {"no_tool": "without the tool", "tool": "with lookup(name)"}


@figure(
    "agent-loop",
    stage="agent",
    claim="agent",
    per=("model",),
    title="A model plus a tool plus a loop: answers with and without lookup(name)",
    caption="Evaluation questions answered by the fine-tuned model directly (without the tool) and by the same "
    "model after tool-use fine-tuning, in the agent loop with lookup(name) over the world's records (params "
    "agent.max_steps model calls at most). Left: accuracy by how often the person's biography was seen in "
    "pretraining. Right: outcomes on seen people and on never-seen names (wrong = hallucinated; a loop that "
    "hits the step limit gives no answer and counts as abstaining). Bars: 95% Wilson intervals.",
    needs=[Need(f"{JOB}/episodes.parquet", EPISODES)],
    world=True,
)
def loop(tables, model: str) -> Drawn:
    table = tables.parquet(f"{JOB.format(model=model)}/episodes.parquet", EPISODES)
    conditions = [c for c in CONDITION_LABELS if c in set(table["condition"])]
    fig, axes = new_figure(ncols=2)
    left, right = axes[0]
    ks = sorted(int(k) for k in table.loc[table["seen"], "mentions"].unique())
    acc: dict[str, Finding] = {}
    halluc_unseen: dict[str, Finding] = {}
    per_k: dict[str, list[Finding]] = {}
    findings: list[Finding] = []
    rows = []
    for i, condition in enumerate(conditions):
        g = table[table["condition"] == condition]
        seen, unseen = g[g["seen"]], g[~g["seen"]]
        label = CONDITION_LABELS[condition]
        by_k = [proportion(f"agent.{model}.{condition}_acc_k{k}", f"accuracy, {label}, seen {k}×",
                           int((seen[seen["mentions"] == k]["grade"] == "correct").sum()),
                           int((seen["mentions"] == k).sum())) for k in ks]
        per_k[condition] = by_k
        left.errorbar(np.arange(len(ks)) + (i - 0.5) * 0.1, [f.value for f in by_k],
                      yerr=[[f.value - f.lo for f in by_k], [f.hi - f.value for f in by_k]], marker="o", capsize=2,
                      color=COLORS[i], label=label)
        acc[condition] = proportion(f"agent.{model}.{condition}_acc", f"accuracy on seen people, {label}",
                                    int((seen["grade"] == "correct").sum()), len(seen))
        halluc_unseen[condition] = proportion(f"agent.{model}.{condition}_halluc_unseen",
                                              f"hallucination on never-seen names, {label}",
                                              int((unseen["grade"] == "wrong").sum()), len(unseen))
        calls = mean_interval(f"agent.{model}.{condition}_tool_calls", f"tool calls per question, {label}",
                              g["tool_calls"].to_numpy(float))
        limit = proportion(f"agent.{model}.{condition}_hit_limit", f"loops that hit the step limit, {label}",
                           int(g["hit_limit"].sum()), len(g))
        bad = proportion(f"agent.{model}.{condition}_bad_calls", f"questions with a bad tool call, {label}",
                         int((g["bad_calls"] > 0).sum()), len(g))
        findings += [acc[condition], halluc_unseen[condition], calls, limit, bad, *by_k]
        for j, (who, part) in enumerate((("seen", seen), ("never seen", unseen))):
            for o, outcome in enumerate(("correct", "wrong", "abstain")):
                f = proportion("", "", int((part["grade"] == outcome).sum()), len(part))
                x = j * 2.6 + i * 1.2 + (o - 1) * 0.35
                right.bar(x, f.value, 0.35, yerr=[[f.value - f.lo], [f.hi - f.value]], capsize=2,
                          color=OUTCOME_COLORS[outcome], label=outcome if (i, j) == (0, 0) else None,
                          hatch="//" if condition == "tool" else None)
                rows.append({"condition": condition, "people": who, "outcome": outcome, "share": f.value,
                             "lo": f.lo, "hi": f.hi, "n": f.n})
    left.set_xticks(range(len(ks)), [str(k) for k in ks])
    left.set_xlabel("times the biography was seen in pretraining")
    left.set_ylabel("accuracy")
    left.set_ylim(0, 1.02)
    left.legend(fontsize=8)
    left.grid(True)
    right.set_xticks([0, 1.2, 2.6, 3.8], ["seen\nno tool", "seen\ntool", "never seen\nno tool", "never seen\ntool"],
                     fontsize=8)
    right.set_ylim(0, 1.02)
    right.set_ylabel("share of questions (hatched: with the tool)")
    right.legend(fontsize=8)
    return Drawn(fig, data=pd.DataFrame(rows), findings=findings, verdict=_verdict(acc, halluc_unseen, per_k, ks))


def _verdict(acc: dict[str, Finding], halluc_unseen: dict[str, Finding], per_k: dict[str, list[Finding]],
             ks: list[int]) -> str:
    """Supported when the tool raises accuracy on seen people overall; partly when it raises it on
    the rarest facts only (what the weights hold least is what a lookup adds most)."""
    if "tool" not in acc or "no_tool" not in acc:
        return "Not resolved: needs both conditions."
    c = compare(acc["tool"], acc["no_tool"])
    h = halluc_unseen["tool"]
    tail = (f" On never-seen names it hallucinates on {h.value:.3f} [{h.lo:.3f}, {h.hi:.3f}] of questions, "
            f"against {halluc_unseen['no_tool'].value:.3f} without the tool.")
    rare = compare(per_k["tool"][0], per_k["no_tool"][0]) if ks else None
    rare_up = rare is not None and rare.resolved and rare.higher is per_k["tool"][0]
    if ks:
        t, n = per_k["tool"], per_k["no_tool"]
        tail = (f" Facts seen {ks[0]}×: {t[0].value:.3f} [{t[0].lo:.3f}, {t[0].hi:.3f}] with the tool, "
                f"{n[0].value:.3f} [{n[0].lo:.3f}, {n[0].hi:.3f}] without; seen {ks[-1]}×: {t[-1].value:.3f} "
                f"[{t[-1].lo:.3f}, {t[-1].hi:.3f}] against {n[-1].value:.3f} [{n[-1].lo:.3f}, {n[-1].hi:.3f}].") + tail
    if c.resolved and c.higher is acc["tool"]:
        return (f"Supported: with lookup(name) in the loop the same model answers {acc['tool'].value:.3f} of "
                f"questions about seen people right, against {acc['no_tool'].value:.3f} from its weights alone "
                f"(95% intervals do not overlap).{tail}")
    if rare_up:
        return (f"Partly supported: the tool lifts the facts the weights hold least (seen {ks[0]}×; 95% "
                f"intervals do not overlap), but not accuracy overall ({acc['tool'].value:.3f} against "
                f"{acc['no_tool'].value:.3f}: {'the model does better without it' if c.resolved else c.reason}): "
                f"it reads its records less reliably than it recalls what it saw often.{tail}")
    if c.resolved:
        return (f"Contradicted at this scale: the model answers better without the tool "
                f"({acc['no_tool'].value:.3f}) than with it ({acc['tool'].value:.3f}); 95% intervals do not "
                f"overlap.{tail}")
    return f"Not resolved: {c.reason}.{tail}"
