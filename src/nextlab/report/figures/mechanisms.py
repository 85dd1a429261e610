"""Figures of the mechanisms stage: ablations, head roles and decoding strategies, one model each,
drawn from the job's tables under `mechanisms/<model>/`."""

from __future__ import annotations

import math

import numpy as np

from nextlab import layout
from nextlab.report.registry import Drawn, Need, figure
from nextlab.report.stats import Finding, compare, proportion
from nextlab.report.style import COLORS, OUTCOME_COLORS, new_figure

JOB = layout.MECHANISMS
ABLATION = ("component", "kind", "layer", "head", "facts", "n_facts", "recall", "recall_delta", "recall_delta_lo",
            "recall_delta_hi", "other_loss", "other_loss_delta", "other_loss_delta_lo", "other_loss_delta_hi")
HEADS = ("layer", "head", "role", "share", "share_lo", "share_hi", "chance", "prompts", "top")
DECODING_QA = ("strategy", "sample", "question_id", "seen", "grade")
DECODING_BIO = ("strategy", "person_id", "text", "stated", "right", "repetition4")
# A head specialises in a role when the lower end of its attention share there is at least this
# many times the share uniform attention would give the role (roles differ in size: a name spans
# several tokens, the previous token one, so an absolute threshold would favour names). `other`,
# the positions no role claims, is no specialisation.
SPECIALIST_LIFT = 2.0
# An ablation that raises the loss on the non-fact tokens by more than this (nats/token: the
# perplexity times e) breaks the language model as a whole; what it costs in recall says nothing
# about where facts in particular are kept, so it is left out of the MLP-against-head verdict.
BREAKS_LANGUAGE_NATS = 1.0


def _delta(row, what: str, label: str, key: str) -> Finding:
    return Finding(key, label, float(row[what]), float(row[f"{what}_lo"]), float(row[f"{what}_hi"]),
                   int(row["n_facts"]) if what == "recall_delta" else None)


@figure(
    "mechanisms-ablation",
    stage="mechanisms",
    claim="storage",
    per=("model",),
    title="What recall depends on: each MLP and attention head ablated in turn",
    caption="Change in fact recall (top; held-out biographies, all seen facts, teacher forced) and in the "
    "loss on every other token (bottom) when one component's output is replaced by its mean over real "
    "tokens (params mechanisms.ablation), against the intact pretrained model. Bars: paired 95% bootstrap "
    "intervals over facts (top) and documents (bottom).",
    needs=[Need(f"{JOB}/ablation.parquet", ABLATION)],
    world=True,
)
def ablation(tables, model: str) -> Drawn:
    table = tables.parquet(f"{JOB.format(model=model)}/ablation.parquet", ABLATION)
    every = table[(table["facts"] == "all") & (table["component"] != "none")].reset_index(drop=True)
    clean = table[(table["facts"] == "all") & (table["component"] == "none")]
    fig, axes = new_figure(nrows=2, sharex=True)
    top, bottom = axes[:, 0]
    x = np.arange(len(every))
    colors = [COLORS[0] if kind == "mlp" else COLORS[1] for kind in every["kind"]]
    for ax, what, label in ((top, "recall_delta", "Δ recall (share of facts)"),
                            (bottom, "other_loss_delta", "Δ loss, other tokens (nats)")):
        values = every[what].to_numpy(float)
        err = np.clip([values - every[f"{what}_lo"].to_numpy(float), every[f"{what}_hi"].to_numpy(float) - values],
                      0, None)
        ax.bar(x, values, color=colors, yerr=err, capsize=2)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_ylabel(label)
        ax.grid(True, axis="y")
    # One ablation can break the model as a whole (several nats); a symmetric log scale keeps the
    # others readable beside it.
    bottom.set_yscale("symlog", linthresh=0.1)
    bottom.set_xticks(x, every["component"].tolist(), rotation=90, fontsize=7)
    top.set_title("blue: MLP, orange: attention head")

    findings: list[Finding] = []
    verdict = None
    if len(clean) and len(every):
        base = clean.iloc[0]
        findings.append(proportion(f"mechanisms.{model}.recall_clean", "recall, nothing ablated",
                                   int(round(base["recall"] * base["n_facts"])), int(base["n_facts"])))
        broken = every[every["other_loss_delta"] > BREAKS_LANGUAGE_NATS]
        for row in broken.itertuples(index=False):
            findings.append(Finding(f"mechanisms.{model}.other_loss_delta_{row.component}",
                                    f"Δ other-token loss, {row.component} ablated (breaks the language model)",
                                    float(row.other_loss_delta), float(row.other_loss_delta_lo),
                                    float(row.other_loss_delta_hi)))
        kept = every[every["other_loss_delta"] <= BREAKS_LANGUAGE_NATS]
        left_out = (f"; left out: {', '.join(broken['component'])}, whose ablation raises the other tokens' "
                    f"loss by more than {BREAKS_LANGUAGE_NATS:g} nat/token (it breaks the model as a whole)"
                    if len(broken) else "")
        mlps, heads = kept[kept["kind"] == "mlp"], kept[kept["kind"] == "head"]
        if len(mlps) and len(heads):
            worst_mlp = mlps.loc[mlps["recall_delta"].idxmin()]
            worst_head = heads.loc[heads["recall_delta"].idxmin()]
            m = _delta(worst_mlp, "recall_delta", f"Δ recall, {worst_mlp['component']} ablated",
                       f"mechanisms.{model}.recall_delta_worst_mlp")
            h = _delta(worst_head, "recall_delta", f"Δ recall, {worst_head['component']} ablated",
                       f"mechanisms.{model}.recall_delta_worst_head")
            findings += [m, h,
                         _delta(worst_mlp, "other_loss_delta", f"Δ other-token loss, {worst_mlp['component']} ablated",
                                f"mechanisms.{model}.other_loss_delta_worst_mlp"),
                         _delta(worst_head, "other_loss_delta",
                                f"Δ other-token loss, {worst_head['component']} ablated",
                                f"mechanisms.{model}.other_loss_delta_worst_head")]
            c = compare(m, h)
            if c.resolved and c.higher is h:
                verdict = (f"Supported: removing {worst_mlp['component']} costs more recall ({m.value:+.3f}) than "
                           f"removing any single head (at most {h.value:+.3f}, {worst_head['component']}); "
                           f"95% intervals do not overlap{left_out}.")
            elif c.resolved:
                verdict = (f"Contradicted at this scale: removing {worst_head['component']} costs more recall "
                           f"({h.value:+.3f}) than removing any MLP (at most {m.value:+.3f}); 95% intervals do not "
                           f"overlap{left_out}.")
            else:
                verdict = (f"Not resolved: the costliest MLP ({worst_mlp['component']}, {m.value:+.3f}) and head "
                           f"({worst_head['component']}, {h.value:+.3f}) ablations are not told apart ({c.reason})"
                           f"{left_out}.")
        else:
            verdict = f"Not resolved: no MLP and head ablation to compare{left_out}."
    return Drawn(fig, data=every.drop(columns=["facts"]), findings=findings, verdict=verdict)


@figure(
    "mechanisms-heads",
    stage="mechanisms",
    claim="heads",
    per=("model",),
    title="Where each head looks from the answer position",
    caption="Attention weight from a question's `<|answer|>` position (where the first answer token is "
    "predicted) on each role's positions, averaged over evaluation questions about seen people, per layer "
    "and head of the pretrained model. Roles: the subject's name, the word naming the attribute, the token "
    "just before, the first (bos) token, the position itself, the rest. The number in a cell is the share; "
    "uniform attention would give the role the share in the last row.",
    needs=[Need(f"{JOB}/heads.parquet", HEADS)],
    world=True,
)
def heads(tables, model: str) -> Drawn:
    from nextlab.mechanisms.heads import ROLES

    table = tables.parquet(f"{JOB.format(model=model)}/heads.parquet", HEADS)
    grid = table.pivot_table(index=["layer", "head"], columns="role", values="share").reindex(columns=list(ROLES))
    chance = table.groupby("role")["chance"].first().reindex(list(ROLES))
    fig, ax = new_figure()
    shown = np.vstack([grid.to_numpy(float), chance.to_numpy(float)[None]])
    image = ax.imshow(shown, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    for (r, c), value in np.ndenumerate(shown):
        ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=6,
                color="white" if value < 0.6 else "black")
    ax.set_xticks(range(len(ROLES)), ROLES)
    ax.set_yticks(range(len(shown)), [f"L{layer} H{head}" for layer, head in grid.index] + ["chance"])
    fig.colorbar(image, ax=ax, label="attention share")

    findings: list[Finding] = []
    specialists: dict[str, tuple[float, str]] = {}  # role -> its most concentrated head
    for (layer, head), g in table[table["role"] != "other"].groupby(["layer", "head"]):
        g = g.assign(lift=g["share"] / g["chance"].where(g["chance"] > 0))
        if not g["lift"].notna().any():
            continue
        row = g.loc[g["lift"].idxmax()]
        f = Finding(f"mechanisms.{model}.head_L{layer}H{head}_{row['role']}",
                    f"L{layer} H{head} attention on {row['role']} (chance {row['chance']:.3f})", float(row["share"]),
                    float(row["share_lo"]), float(row["share_hi"]), int(row["prompts"]))
        findings.append(f)
        if math.isfinite(row["share_lo"]) and row["share_lo"] >= SPECIALIST_LIFT * row["chance"]:
            if row["lift"] > specialists.get(row["role"], (0.0, ""))[0]:
                specialists[row["role"]] = (float(row["lift"]),
                                            f"L{layer} H{head} ({row['share']:.2f} vs {row['chance']:.2f})")
    if len(specialists) >= 2:
        verdict = (f"Supported: heads specialise in {len(specialists)} different roles ("
                   + ", ".join(f"{role}: {head}" for role, (_, head) in sorted(specialists.items()))
                   + f"), each putting at least {SPECIALIST_LIFT:g}× the uniform share of its attention there "
                   "(95% lower bound).")
    else:
        verdict = (f"Not resolved: {len(specialists)} role(s) have a head putting at least {SPECIALIST_LIFT:g}× the "
                   "uniform share of its attention there (95% lower bound); specialisation needs two.")
    return Drawn(fig, data=table, findings=findings, verdict=verdict)


def _distinct2(texts) -> Finding:
    """Mean over biographies of each one's distinct word bigrams (a share), with a normal 95%
    interval. Per text, because a bootstrap of the pooled share is biased: resampling repeats
    texts, and a repeated text adds no new bigram."""
    from nextlab.mechanisms.decoding import distinct_n
    from nextlab.report.stats import mean_interval

    values = np.array([distinct_n([t], 2) for t in texts], float)
    return mean_interval("", "", values)


@figure(
    "mechanisms-decoding",
    stage="mechanisms",
    claim="decoding",
    per=("model",),
    title="Decoding strategies: accuracy against diversity",
    caption="Left: answers of the fine-tuned model to the evaluation questions under each strategy "
    "(correct on seen people; wrong = hallucinated, over all questions; abstained). Right: biographies the "
    "pretrained model writes for evaluation people from their name: distinct word bigrams per "
    "biography (diversity: the share of a biography's word bigrams that are distinct, averaged over "
    "biographies) against the share of stated values that are right (factual precision). Bars: 95% Wilson "
    "intervals (normal intervals over biographies for distinct-2).",
    needs=[Need(f"{JOB}/decoding_qa.parquet", DECODING_QA), Need(f"{JOB}/decoding_bio.parquet", DECODING_BIO)],
    world=True,
)
def decoding(tables, model: str) -> Drawn:
    import pandas as pd

    qa = tables.parquet(f"{JOB.format(model=model)}/decoding_qa.parquet", DECODING_QA)
    bio = tables.parquet(f"{JOB.format(model=model)}/decoding_bio.parquet", DECODING_BIO)
    strategies = list(dict.fromkeys(qa["strategy"]))
    fig, axes = new_figure(ncols=2)
    left, right = axes[0]
    rows, acc, prec, div = [], {}, {}, {}
    width = 0.27
    for i, name in enumerate(strategies):
        g = qa[qa["strategy"] == name]
        seen = g[g["seen"]]
        acc[name] = proportion(f"mechanisms.{model}.qa_acc_{name}", f"QA accuracy, {name}",
                               int((seen["grade"] == "correct").sum()), len(seen))
        halluc = proportion(f"mechanisms.{model}.qa_halluc_{name}", f"hallucination rate, {name}",
                            int((g["grade"] == "wrong").sum()), len(g))
        abstain = proportion(f"mechanisms.{model}.qa_abstain_{name}", f"abstention rate, {name}",
                             int((g["grade"] == "abstain").sum()), len(g))
        for j, (f, outcome) in enumerate(((acc[name], "correct"), (halluc, "wrong"), (abstain, "abstain"))):
            left.bar(i + (j - 1) * width, f.value, width, yerr=[[f.value - f.lo], [f.hi - f.value]], capsize=2,
                     color=OUTCOME_COLORS[outcome], label=outcome if i == 0 else None)
        b = bio[bio["strategy"] == name]
        stated = int(b["stated"].sum())
        prec[name] = proportion(f"mechanisms.{model}.bio_precision_{name}", f"biography precision, {name}",
                                int(b["right"].sum()), stated)
        d = _distinct2(b["text"])
        div[name] = Finding(f"mechanisms.{model}.bio_distinct2_{name}", f"distinct-2, {name}", d.value, d.lo, d.hi,
                            d.n)
        right.errorbar(div[name].value, prec[name].value, xerr=_half_widths(div[name]), yerr=_half_widths(prec[name]),
                       marker="o", capsize=2, color=COLORS[i % len(COLORS)], label=name)
        rows.append({"strategy": name, "qa_accuracy": acc[name].value, "qa_hallucination": halluc.value,
                     "qa_abstention": abstain.value, "bio_distinct2": div[name].value,
                     "bio_precision": prec[name].value, "bio_repetition4": float(b["repetition4"].mean()),
                     "bio_stated": float(b["stated"].mean()) if len(b) else math.nan})
    left.set_xticks(range(len(strategies)), strategies, rotation=30)
    left.set_ylim(0, 1.02)
    left.set_ylabel("share of questions")
    left.legend(fontsize=8)
    right.set_xlabel("distinct-2 (diversity)")
    right.set_ylabel("factual precision of stated values")
    right.legend(fontsize=8)
    right.grid(True)

    findings = [f for name in strategies for f in (acc[name], prec[name], div[name])]
    verdict = None
    temperatures = {name: _temperature(tables, name) for name in strategies}
    greedy = next((name for name in strategies if temperatures[name] == 0), None)
    hottest = max((name for name in strategies if name != greedy), key=lambda name: temperatures[name], default=None)
    if greedy and hottest and hottest != greedy:
        more_diverse = compare(div[hottest], div[greedy])
        less_accurate = compare(acc[greedy], acc[hottest])
        if more_diverse.resolved and more_diverse.higher is div[hottest] and less_accurate.resolved \
                and less_accurate.higher is acc[greedy]:
            verdict = (f"Supported: {hottest} writes more varied biographies than {greedy} (distinct-2 "
                       f"{div[hottest].value:.3f} vs {div[greedy].value:.3f}) and answers fewer questions right "
                       f"({acc[hottest].value:.3f} vs {acc[greedy].value:.3f}); 95% intervals do not overlap.")
        else:
            reasons = [c.reason for c in (more_diverse, less_accurate)
                       if not c.resolved or c.higher not in (div[hottest], acc[greedy])]
            verdict = f"Not resolved: {hottest} against {greedy}: {'; '.join(reasons)}."
    return Drawn(fig, data=pd.DataFrame(rows), findings=findings, verdict=verdict)


def _half_widths(f: Finding) -> list[list[float]]:
    """Error-bar lengths below and above a finding's value (0 where its interval is undefined)."""
    below, above = f.value - f.lo, f.hi - f.value
    return [[below if below >= 0 else 0.0], [above if above >= 0 else 0.0]]


def _temperature(tables, name: str) -> float:
    """A strategy's temperature, from the study's params."""
    for strategy in tables.study.mechanisms.strategies:
        if strategy.name == name:
            return strategy.temperature
    return math.nan


IN_CONTEXT = ("checkpoint", "condition", "person_id", "attribute", "grade", "weights_before", "weights_after")
CONDITION_LABELS = {"none": "no biography", "context": "its biography", "other_context": "another's biography"}


@figure(
    "mechanisms-in-context",
    stage="mechanisms",
    claim="in_context",
    per=("model",),
    title="Answering from the prompt: never-seen names with and without their biography",
    caption="Questions about never-seen names of the evaluation split (every attribute), answered greedily "
    "with nothing before the question, with the person's biography before it, and with another never-seen "
    "person's biography (the control: the answer is not there). Graded against the value the biography "
    "states; wrong = hallucinated. Left: the pretrained model (pretraining holds data.reading_docs "
    "documents of this shape); right: the fine-tuned model. Bars: 95% Wilson intervals over questions.",
    needs=[Need(f"{JOB}/in_context.parquet", IN_CONTEXT)],
    world=True,
)
def in_context(tables, model: str) -> Drawn:
    import pandas as pd

    table = tables.parquet(f"{JOB.format(model=model)}/in_context.parquet", IN_CONTEXT)
    table = table[table["grade"] != "skipped"]
    checkpoints = [c for c in ("pretrain", "sft") if c in set(table["checkpoint"])]
    fig, axes = new_figure(ncols=max(1, len(checkpoints)), sharey=True)
    axes = np.atleast_1d(axes).ravel()
    conditions = [c for c in CONDITION_LABELS if c in set(table["condition"])]
    width = 0.27
    found: dict[tuple[str, str, str], Finding] = {}
    rows = []
    for ax, checkpoint in zip(axes, checkpoints):
        for i, condition in enumerate(conditions):
            g = table[(table["checkpoint"] == checkpoint) & (table["condition"] == condition)]
            for j, outcome in enumerate(("correct", "wrong", "abstain")):
                f = proportion(f"mechanisms.{model}.in_context_{outcome}_{checkpoint}_{condition}",
                               f"{outcome}, {checkpoint} model, {CONDITION_LABELS[condition]}",
                               int((g["grade"] == outcome).sum()), len(g))
                found[(checkpoint, condition, outcome)] = f
                ax.bar(i + (j - 1) * width, f.value, width, yerr=[[f.value - f.lo], [f.hi - f.value]], capsize=2,
                       color=OUTCOME_COLORS[outcome], label=outcome if i == 0 else None)
                rows.append({"checkpoint": checkpoint, "condition": condition, "outcome": outcome, "share": f.value,
                             "lo": f.lo, "hi": f.hi, "n": f.n})
        ax.set_xticks(range(len(conditions)), [CONDITION_LABELS[c] for c in conditions], rotation=15)
        ax.set_title(f"{checkpoint} model")
        ax.set_ylim(0, 1.02)
        ax.grid(True, axis="y")
    axes[0].set_ylabel("share of questions")
    axes[0].legend(fontsize=8)

    unchanged = {c: bool((g["weights_before"] == g["weights_after"]).all()) for c, g in table.groupby("checkpoint")}
    findings = [found[k] for k in found if k[2] == "correct"] + [
        found[(c, "other_context", "wrong")] for c in checkpoints if (c, "other_context", "wrong") in found]
    findings += [Finding(f"mechanisms.{model}.in_context_weights_unchanged_{c}",
                         f"weights unchanged by answering, {c} model (1 = same hash)", float(u), digits=0)
                 for c, u in unchanged.items()]
    verdict = None
    if "pretrain" in checkpoints and "context" not in conditions:
        verdict = ("Not measured: every prompt with a biography is longer than the model's context window "
                   "(params models.<model>.block_size).")
    elif "pretrain" in checkpoints and {"none", "context"} <= set(conditions):
        with_bio, without = found[("pretrain", "context", "correct")], found[("pretrain", "none", "correct")]
        c = compare(with_bio, without)
        weights = ("the weights' hash is the same before and after" if unchanged.get("pretrain")
                   else "but the weights' hash changed")
        if c.resolved and c.higher is with_bio and unchanged.get("pretrain"):
            verdict = (f"Supported: with the biography in the prompt the pretrained model answers "
                       f"{with_bio.value:.1%} of questions about never-seen names right, without it "
                       f"{without.value:.1%}; 95% intervals do not overlap, and {weights}.")
        elif c.resolved and c.higher is with_bio:
            verdict = f"Not shown: the context helps ({with_bio.value:.1%} vs {without.value:.1%}), {weights}."
        else:
            verdict = (f"Not resolved: accuracy with and without the biography is not told apart ({c.reason}); "
                       f"{weights}.")
    return Drawn(fig, data=pd.DataFrame(rows), findings=findings, verdict=verdict)


KALAI = ("mentions", "confidence", "correct")
KALAI_KEYS = ("kalai_ece", "kalai_ece_lo", "kalai_ece_hi", "kalai_forced_error_all", "kalai_forced_error_all_lo",
              "kalai_forced_error_all_hi", "kalai_forced_error_k1", "kalai_forced_error_k1_lo",
              "kalai_forced_error_k1_hi", "kalai_facts_all", "kalai_facts_k1", "kalai_singleton_rate")


@figure(
    "mechanisms-kalai",
    stage="mechanisms",
    claim="frequency",
    per=("model",),
    title="Kalai et al.'s bound: the pretrained model forced to name every fact",
    caption="Every seen person's fresh biography (never trained on) is cut before each fact; every value of "
    "the attribute is scored as the continuation and normalised over the values, and the likeliest is the "
    "pretrained model's forced answer. Left: its probability against the share of forced answers that are "
    "right (equal-width bins; dot area: facts). Right: the share that are wrong, by how often the fact was "
    "seen and over all seen facts, with the singleton rate (dashed) and the theorem's lower bound, the "
    "singleton rate minus the calibration error (dotted). Bars: 95% Wilson intervals.",
    needs=[Need(f"{JOB}/kalai.parquet", KALAI), Need(f"{JOB}/metrics.json", KALAI_KEYS)],
    world=True,
)
def kalai(tables, model: str) -> Drawn:
    import pandas as pd

    from nextlab.qa.metrics import reliability_bins

    table = tables.parquet(f"{JOB.format(model=model)}/kalai.parquet", KALAI)
    m = tables.json(f"{JOB.format(model=model)}/metrics.json", KALAI_KEYS)
    conf, right = table["confidence"].to_numpy(float), table["correct"].to_numpy(bool)
    fig, axes = new_figure(ncols=2)
    left, right_ax = axes[0]
    counts, mean_conf, accuracy = reliability_bins(conf, right, 10, "width")
    left.plot([0, 1], [0, 1], color="#999999", linewidth=1, linestyle="--")
    left.scatter(mean_conf, accuracy, s=20 + 200 * counts / max(counts.max(), 1), color=COLORS[0], alpha=0.8)
    left.set(xlabel="probability of the forced answer", ylabel="share right", xlim=(0, 1), ylim=(0, 1.02))
    left.grid(True)
    rows = []
    groups = [(str(k), table["mentions"] == k) for k in sorted(table["mentions"].unique())] + [("all", None)]
    for i, (label, sel) in enumerate(groups):
        wrong = ~right if sel is None else ~right[sel.to_numpy()]
        f = proportion(f"mechanisms.{model}.kalai_error_{label}", f"forced error, {label}", int(wrong.sum()), len(wrong))
        right_ax.bar(i, f.value, 0.7, yerr=[[f.value - f.lo], [f.hi - f.value]], capsize=2,
                     color=OUTCOME_COLORS["wrong"] if sel is not None else COLORS[0])
        rows.append({"mentions": label, "forced_error": f.value, "lo": f.lo, "hi": f.hi, "n": f.n})
    singleton, ece = m["kalai_singleton_rate"], m["kalai_ece"]
    right_ax.axhline(singleton, color="#000000", linestyle="--", linewidth=1, label="singleton rate")
    right_ax.axhline(singleton - ece, color="#000000", linestyle=":", linewidth=1, label="singleton rate − ECE")
    right_ax.set_xticks(range(len(groups)), [g[0] for g in groups])
    right_ax.set(xlabel="times the fact was seen", ylabel="share of forced answers wrong", ylim=(0, 1.02))
    right_ax.legend(fontsize=8)
    right_ax.grid(True, axis="y")

    def found(key: str, label: str, n_key: str | None = None) -> Finding:
        return Finding(f"mechanisms.{model}.{key}", label, m[key], m[f"{key}_lo"], m[f"{key}_hi"],
                       int(m[n_key]) if n_key else None)

    forced = found("kalai_forced_error_all", "forced-answer error, all seen facts", "kalai_facts_all")
    once = found("kalai_forced_error_k1", "forced-answer error, facts seen once", "kalai_facts_k1")
    calib = found("kalai_ece", "calibration error (ECE) of the forced answer's probability")
    bound = Finding(f"mechanisms.{model}.kalai_bound", "the bound: singleton rate − ECE", singleton - ece,
                    singleton - m["kalai_ece_hi"], singleton - m["kalai_ece_lo"])
    rate = Finding(f"mechanisms.{model}.kalai_singleton_rate", "singleton rate (share of seen facts seen once)",
                   singleton, interval="counted")
    c = compare(forced, bound)
    if not bound.hi > 0:
        verdict = (f"Not resolved: the bound is vacuous here: the calibration error ({ece:.3f}) is not below the "
                   f"singleton rate ({singleton:.3f}), and the theorem speaks of a calibrated model.")
    elif c.resolved and c.higher is forced:
        verdict = (f"Supported: forced to answer, the pretrained model errs on {forced.value:.1%} of seen facts "
                   f"({once.value:.1%} of those seen once), above Kalai et al.'s lower bound, the singleton rate "
                   f"{singleton:.3f} minus its calibration error {ece:.3f} (95% intervals do not overlap).")
    elif c.resolved:
        verdict = (f"Contradicted: the forced error ({forced.value:.1%}) is below the singleton rate minus the "
                   f"calibration error ({bound.value:.3f}); 95% intervals do not overlap.")
    else:
        verdict = f"Not resolved: the forced error and the bound are not told apart ({c.reason})."
    return Drawn(fig, data=pd.DataFrame(rows), findings=[forced, once, calib, rate, bound], verdict=verdict)
