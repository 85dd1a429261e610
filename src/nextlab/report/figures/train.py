"""Figures of pretraining: the loss curve, and fact recall by how often a fact was seen."""

from __future__ import annotations

import math

import numpy as np

from nextlab import layout
from nextlab.report.registry import Drawn, Need, figure
from nextlab.report.stats import Finding, compare, mean_interval, proportion
from nextlab.report.style import COLORS, new_figure

CURVE = layout.PRETRAIN_CURVE
CURVE_COLUMNS = ("step", "train_loss", "val_loss")
FACTS = layout.PRETRAIN_FACTS
FACTS_COLUMNS = ("mentions", "bio_facts", "bio_acc", "qa_questions", "qa_acc")
PROBES = {"bio": "recall inside a fresh biography", "qa": "answer to a held-out question"}


@figure(
    "pretrain-loss",
    stage="train",
    claim="learning",
    per=("model",),
    title="Next-token loss while pretraining",
    caption="Cross-entropy of the next token (nats per token) on training batches at every step (line) "
    "and on held-out validation text at each evaluation (markers).",
    needs=[Need(CURVE, CURVE_COLUMNS)],
)
def loss(tables, model: str) -> Drawn:
    from nextlab.train.plot import plot_loss  # the train stage's own figure

    curve = tables.csv(CURVE.format(model=model), CURVE_COLUMNS)
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in curve.to_dict("records")]
    val = curve.dropna(subset=["val_loss"])
    train = curve.dropna(subset=["train_loss"])
    findings: list[Finding] = []
    verdict = None
    if len(val) >= 2 and len(train):
        first, last = val.iloc[0], val.iloc[-1]
        tail = train[train["step"] >= train["step"].max() * 0.9]["train_loss"].to_numpy()
        end = mean_interval(f"pretrain.{model}.train_loss_end", "training loss over the last 10% of steps",
                            tail, unit="nats/token")
        findings = [
            Finding(f"pretrain.{model}.val_loss_start", f"validation loss at step {int(first.step)}",
                    float(first.val_loss), unit="nats/token"),
            Finding(f"pretrain.{model}.val_loss_end", f"validation loss at step {int(last.step)}",
                    float(last.val_loss), unit="nats/token"),
            end,
        ]
        drop = float(first.val_loss - last.val_loss)
        if drop > 0 and end.hi < float(first.val_loss):
            verdict = (f"Supported: training lowered held-out loss by {drop:.3f} nats/token "
                       f"(perplexity {math.exp(first.val_loss):.1f} → {math.exp(last.val_loss):.2f}).")
        else:
            verdict = "Not shown at this scale: held-out loss did not fall below its starting value."
    data = curve[["step", "train_loss", "val_loss"]]
    return Drawn(lambda path: plot_loss(rows, path, title=f"model {model}"), data=data,
                 findings=findings, verdict=verdict)


@figure(
    "pretrain-facts",
    stage="train",
    claim="frequency",
    per=("model",),
    title="Fact recall by mention count",
    caption="Share of facts the pretrained model gets exactly right, by how many times the fact's "
    "biography appeared in the corpus (k). 'bio': greedy next tokens reproduce the value inside a "
    "fresh, never-trained biography; 'qa': the greedy answer to a held-out question matches. "
    "Bars: 95% Wilson intervals.",
    needs=[Need(FACTS, FACTS_COLUMNS)],
    world=True,
)
def facts(tables, model: str) -> Drawn:
    import pandas as pd

    table = tables.csv(FACTS.format(model=model), FACTS_COLUMNS).sort_values("mentions")
    fig, ax = new_figure()
    rows = []
    findings: dict[tuple[str, int], Finding] = {}
    for i, (probe, label) in enumerate(PROBES.items()):
        sub = table[table[f"{probe}_facts" if probe == "bio" else "qa_questions"] > 0]
        n = sub[f"{probe}_facts" if probe == "bio" else "qa_questions"].astype(int).to_numpy()
        acc = sub[f"{probe}_acc"].to_numpy(float)
        ks = sub["mentions"].astype(int).to_numpy()
        points = []
        for k, nk, ak in zip(ks, n, acc):
            # facts.csv rounds accuracies; the count of correct facts is the exact quantity
            f = proportion(f"pretrain.{model}.{probe}_acc_k{k}", f"{probe} accuracy, facts seen {k}×",
                           int(round(ak * nk)), int(nk))
            findings[(probe, int(k))] = f
            points.append((f.value, f.lo, f.hi))
            rows.append({"mentions": int(k), f"{probe}_accuracy": f.value, f"{probe}_lo": f.lo,
                         f"{probe}_hi": f.hi, f"{probe}_n": int(nk)})
        value, lo, hi = np.array(points).reshape(-1, 3).T
        dodge = 2.0 ** (0.04 * (i - (len(PROBES) - 1) / 2))  # side by side on the log axis, not on top
        ax.errorbar(ks * dodge, value, yerr=np.clip([value - lo, hi - value], 0, None), marker="o", capsize=3,
                    color=COLORS[i], label=f"{probe}: {label}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(table["mentions"].astype(int)), [str(k) for k in sorted(table["mentions"].astype(int))])
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("mentions of the fact in the pretraining corpus (k, log scale)")
    ax.set_ylabel("exact-match accuracy (share of facts)")
    ax.grid(True)
    ax.legend(loc="upper left")

    verdict = None
    ks_all = sorted({k for _, k in findings})
    chosen: list[Finding] = []
    if len(ks_all) >= 2:
        k_lo, k_hi = ks_all[0], ks_all[-1]
        resolved, reasons = [], []
        for probe in PROBES:
            a, b = findings.get((probe, k_lo)), findings.get((probe, k_hi))
            if a and b:
                chosen += [a, b]
                c = compare(b, a)
                if c.resolved and c.higher is b:
                    resolved.append(probe)
                else:
                    reasons.append(c.reason)
        if resolved:
            verdict = (f"Supported: facts seen {k_hi}× are recalled more often than facts seen {k_lo}× "
                       f"({', '.join(resolved)} probe{'s' if len(resolved) > 1 else ''}; 95% intervals do not overlap).")
        else:
            verdict = (f"Not resolved at this scale: recall of facts seen {k_hi}× is not resolved above {k_lo}× "
                       f"({'; '.join(reasons) or 'no probe measured both'}).")
    # One row per k, probes side by side: the flat table DVC plots draw as two lines.
    columns = ["mentions"] + [f"{p}_{c}" for p in PROBES for c in ("accuracy", "lo", "hi", "n")]
    data = (pd.DataFrame(rows, columns=columns).groupby("mentions", as_index=False).first()
            if rows else pd.DataFrame(columns=columns))
    return Drawn(fig, data=data, findings=chosen or list(findings.values()), verdict=verdict)
