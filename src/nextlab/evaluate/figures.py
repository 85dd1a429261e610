"""Figures of the evaluation, drawn from tables only (no model): the answers of every scheme and
seed (`answers.parquet` rows) and the across-seed summary (`summary.parquet`: model, scheme,
metric, value, lo, hi, n_seeds). The report stage calls the same functions.

    >>> paths = draw_all(answers, summary, Path("figures"), targets=(0, 0.5, 0.75, 0.9))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nextlab.evaluate.summary import bucket_sort_key  # noqa: E402
from nextlab.io import atomic_path  # noqa: E402
from nextlab.qa.metrics import reliability_bins  # noqa: E402

_BUCKET_METRIC = re.compile(r"^(k\d+|unseen)\.")


def scheme_order(schemes: Sequence[str]) -> list[str]:
    """none first (the baseline), then binary, the penalized ones by t, calibrated, the rest.

    >>> scheme_order(["calibrated", "penalized-0.9", "binary", "penalized-0.5", "none"])
    ['none', 'binary', 'penalized-0.5', 'penalized-0.9', 'calibrated']
    """
    def key(name: str) -> tuple[int, float, str]:
        if name == "none":
            return (0, 0.0, name)
        if name == "binary":
            return (1, 0.0, name)
        if name.startswith("penalized-"):
            try:
                return (2, float(name.split("-", 1)[1]), name)
            except ValueError:
                return (4, 0.0, name)
        if name == "calibrated":
            return (3, 0.0, name)
        return (4, 0.0, name)

    return sorted(set(schemes), key=key)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _value(summary: pd.DataFrame, scheme: str, metric: str) -> tuple[float, float, float]:
    row = summary[(summary["scheme"] == scheme) & (summary["metric"] == metric)]
    if row.empty:
        return np.nan, np.nan, np.nan
    r = row.iloc[0]
    return float(r["value"]), float(r["lo"]), float(r["hi"])


def reliability(answers: pd.DataFrame, path: Path, n_bins: int = 10, column: str = "confidence") -> Path:
    """One panel per scheme: accuracy of attempted evaluation answers per confidence bin (seeds
    pooled), against the diagonal of perfect calibration; bar width shows the bin, the number on
    top how many answers it holds."""
    ev = answers[(answers["split"] == "eval") & (answers["grade"] != "abstain")]
    schemes = scheme_order(answers["scheme"].unique())
    cols = min(3, len(schemes))
    rows = int(np.ceil(len(schemes) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.8 * rows), squeeze=False, constrained_layout=True)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for ax, scheme in zip(axes.flat, schemes):
        sub = ev[(ev["scheme"] == scheme) & ev[column].notna()]
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
        if len(sub):
            counts, conf, acc = reliability_bins(sub[column].to_numpy(float), (sub["grade"] == "correct").to_numpy(),
                                                 n_bins, "width")
            # A bar per bin at its place; the dot is the bin's mean confidence against its accuracy.
            left = edges[np.searchsorted(edges[1:-1], conf, side="left")]
            ax.bar(left, acc, width=1.0 / n_bins, align="edge", alpha=0.6, color="tab:blue", edgecolor="black")
            ax.plot(conf, acc, "o", color="tab:red", ms=3)
            for x, y, n in zip(left + 0.5 / n_bins, acc, counts):
                ax.text(x, min(y + 0.03, 0.95), str(n), ha="center", fontsize=7)
        ax.set_title(f"{scheme} ({len(sub)} answers)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"{column.replace('_', ' ')} (bin mean)")
        ax.set_ylabel("accuracy")
    for ax in list(axes.flat)[len(schemes):]:
        ax.axis("off")
    fig.suptitle("Reliability of attempted answers (evaluation split, seeds pooled; "
                 "bar: bin accuracy, dot: bin mean confidence, number: answers)")
    return _save(fig, path)


def hallucination_vs_abstention(summary: pd.DataFrame, path: Path) -> Path:
    """Each scheme's abstention (x) and hallucination (y) with 95% intervals: on all evaluation
    questions, on seen people only by bucket mean, and on never-seen names."""
    schemes = scheme_order(summary["scheme"].unique())
    panels = [("", "all evaluation questions"), ("unseen.", "never-seen names")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (prefix, title) in zip(axes, panels):
        for i, scheme in enumerate(schemes):
            x, xlo, xhi = _value(summary, scheme, f"{prefix}abstention")
            y, ylo, yhi = _value(summary, scheme, f"{prefix}hallucination")
            if np.isnan(x) or np.isnan(y):
                continue
            ax.errorbar(x, y, xerr=[[max(x - xlo, 0)], [max(xhi - x, 0)]] if np.isfinite(xlo) else None,
                        yerr=[[max(y - ylo, 0)], [max(yhi - y, 0)]] if np.isfinite(ylo) else None,
                        fmt="o", color=colors[i % len(colors)], capsize=3, label=scheme)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("abstention rate")
        ax.set_ylabel("hallucination rate (wrong / all)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Hallucination vs abstention by reward scheme (mean over seeds, 95% CI)")
    return _save(fig, path)


REFERENCE_ROWS = (
    ("ref_threshold_t{t}", "threshold, sequence prob."),
    ("ref_threshold_cand_t{t}", "threshold, candidate prob."),
    ("ref_oracle", "knowledge oracle"),
)


def score_rows(summary: pd.DataFrame, targets: Sequence[float],
               reference: str = "none") -> list[tuple[str, str, list[tuple[float, float, float]]]]:
    """The score matrix's rows: (kind, label, [(value, lo, hi) per target]); kind is `scheme` for
    a model trained under that scheme graded at each t, `reference` for a policy read off the
    `reference` model's best guesses with no training (`summary.scheme_metrics`: its threshold at
    each t, graded at that t, and the oracle, the same under every t)."""
    rows = [("scheme", scheme, [_value(summary, scheme, f"score_t{t:g}") for t in targets])
            for scheme in scheme_order(summary["scheme"].unique())]
    if reference in set(summary["scheme"]):
        name = "SFT" if reference == "none" else reference
        for metric, label in REFERENCE_ROWS:
            cells = [_value(summary, reference, metric.format(t=f"{t:g}")) for t in targets]
            if any(np.isfinite(v) for v, _, _ in cells):
                rows.append(("reference", f"{name}: {label}", cells))
    return rows


def score_matrix(summary: pd.DataFrame, path: Path, targets: Sequence[float]) -> Path:
    """Rows: the scheme a model was trained under, then reference policies of the SFT model (no
    training); columns: the target t it is graded by (correct 1, wrong -t/(1-t), abstain 0).
    Cells: mean score and 95% interval. Colours rank the trained schemes within a column; the
    reference rows are grey, outside the ranking."""
    rows = score_rows(summary, targets)
    values = np.array([[v for v, _, _ in cells] for _, _, cells in rows]).reshape(len(rows), len(targets))
    text = [[f"{v:.2f}\n[{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else f"{v:.2f}" for v, lo, hi in cells]
            for _, _, cells in rows]
    trained = np.array([kind == "scheme" for kind, _, _ in rows])
    fig, ax = plt.subplots(figsize=(1.9 * len(targets) + 3, 0.75 * len(rows) + 1.5))
    # Colour each column on its own scale: scores under t=0.9 span a far wider range than t=0.
    shown = np.full_like(values, np.nan)
    for j in range(len(targets)):
        col = values[trained, j]
        span = np.nanmax(col) - np.nanmin(col) if np.isfinite(col).any() else 0
        shown[trained, j] = (col - np.nanmin(col)) / span if span > 0 else 0.5
    cmap = plt.get_cmap("RdYlGn").copy()
    cmap.set_bad("#e6e6e6")
    ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(targets)):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=8)
    if (~trained).any():
        ax.axhline(int(trained.sum()) - 0.5, color="black", lw=1.5)
    ax.set_xticks(range(len(targets)), [f"t = {t:g}" for t in targets])
    ax.set_yticks(range(len(rows)), [label for _, label, _ in rows])
    ax.set_xlabel("graded by (confidence target)")
    ax.set_ylabel("trained on (reward scheme) / reference policy")
    ax.set_title("Score: trained-on x graded-by (colour: rank among trained schemes; grey: references)")
    return _save(fig, path)


def by_mentions(summary: pd.DataFrame, path: Path) -> Path:
    """Accuracy, hallucination and abstention per mention-count bucket, one line per scheme, with
    95% intervals; the singleton rate is marked on the hallucination panel at k1 (Kalai et al.)."""
    schemes = scheme_order(summary["scheme"].unique())
    buckets = sorted({m.split(".", 1)[0] for m in summary["metric"] if _BUCKET_METRIC.match(m)}, key=bucket_sort_key)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    x = np.arange(len(buckets))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # Never-seen names are no point on the mention axis: drawn apart, not joined to the line.
    seen = np.array([b != "unseen" for b in buckets])
    for ax, metric in zip(axes, ("accuracy", "hallucination", "abstention")):
        for k, scheme in enumerate(schemes):
            vals = np.array([_value(summary, scheme, f"{b}.{metric}") for b in buckets]).reshape(-1, 3)
            offset = (k - (len(schemes) - 1) / 2) * 0.06
            err = np.abs(vals[:, [1, 2]].T - vals[:, 0])
            err = np.where(np.isfinite(err), err, 0.0)
            color = colors[k % len(colors)]
            ax.errorbar(x[seen] + offset, vals[seen, 0], yerr=err[:, seen], marker="o", capsize=2, color=color,
                        label=scheme)
            if (~seen).any():
                ax.errorbar(x[~seen] + offset, vals[~seen, 0], yerr=err[:, ~seen], marker="s", capsize=2,
                            color=color, ls="none")
        ax.set_xticks(x, buckets)
        ax.set_xlabel("mentions in the corpus (bucket)")
        ax.set_title(metric)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if metric == "hallucination" and "k1" in buckets:
            sr = summary[summary["metric"] == "singleton_rate"]["value"]
            if len(sr) and np.isfinite(sr.iloc[0]):
                i = buckets.index("k1")
                ax.hlines(sr.iloc[0], i - 0.4, i + 0.4, colors="black", linestyles=":", label="singleton rate")
    axes[0].set_ylabel("rate")
    axes[1].legend(fontsize=8)
    fig.suptitle("By mention count (mean over seeds, 95% CI)")
    return _save(fig, path)


def draw_all(answers: pd.DataFrame, summary: pd.DataFrame, out_dir: str | os.PathLike,
             targets: Sequence[float], n_bins: int = 10) -> list[Path]:
    out = Path(out_dir)
    return [
        reliability(answers, out / "reliability.png", n_bins),
        hallucination_vs_abstention(summary, out / "hallucination_vs_abstention.png"),
        score_matrix(summary, out / "score_matrix.png", targets),
        by_mentions(summary, out / "accuracy_by_mentions.png"),
    ]
