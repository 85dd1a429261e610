"""Figures of the nondeterminism study, drawn from its parquet tables only (no model, no torch).

`tables` maps a table name (`logits`, `steps`, `completions`, `unique`, `timing`) to the rows of
every job of a model concatenated (`summary.read_jobs`); each row carries its job's factors
(`dtype`, `attention`, `threads`). A job is drawn as one line, labelled `dtype/attention[/threads]`.

    >>> paths = draw_all(read_jobs(["results/default/nondeterminism/small/float32/sdpa/threads1"]),
    ...                  Path("figures"))                                       # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nextlab.config.nondeterminism import FIGURES  # noqa: E402
from nextlab.io import atomic_path  # noqa: E402
from nextlab.nondeterminism.metrics import decoding_speed  # noqa: E402

COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _jobs(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per job, in a stable order; the thread count shows only when it varies."""
    if frame.empty:
        return []
    many_threads = frame["threads"].nunique() > 1
    out = []
    for (dtype, attention, threads), rows in frame.groupby(["dtype", "attention", "threads"], sort=True):
        label = f"{dtype}/{attention}" + (f"/threads{threads}" if many_threads else "")
        out.append((label, rows))
    return out


def _empty(ax: plt.Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes, color="#777777")


def _batch_axis(ax: plt.Axes, sizes) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes])
    ax.set_xlabel("batch size")


def rates_vs_batch(tables: dict[str, pd.DataFrame], path: Path) -> Path:
    """Per job: share of teacher-forced steps not bitwise equal to batch 1, argmax flips per token
    (decode with the KV cache), and free-running completions that differ from the prompt alone;
    the batch-invariant control dashed."""
    logits, comp = tables["logits"], tables["completions"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = [("steps not bitwise equal", "not_equal"), ("argmax flips per token", "flip"),
              ("completions that differ", "differ")]
    sizes = sorted(set(logits.get("batch_size", pd.Series(dtype=int))) | set(comp.get("batch_size", [])))
    first_l = logits[(logits["run"] == "first") & (logits["measure"] == "decode")] if len(logits) else logits
    if len(first_l) and first_l.empty:
        first_l = logits[(logits["run"] == "first") & (logits["measure"] == "prefill")]
    first_c = comp[comp["run"] == "first"] if len(comp) else comp
    for ax, (title, kind) in zip(axes, panels):
        source = first_c if kind == "differ" else first_l
        drawn = False
        for color, (label, rows) in zip(COLORS * 4, _jobs(source)):
            for path_name, style in (("default", "-"), ("invariant", "--")):
                part = rows[rows["path"] == path_name]
                if part.empty:
                    continue
                by_b = part.groupby("batch_size")
                if kind == "differ":
                    rate = by_b["differs"].mean()
                else:
                    column = "steps_not_equal" if kind == "not_equal" else "flips"
                    rate = by_b[column].sum() / by_b["steps"].sum().replace(0, np.nan)
                rate = rate.reindex(sorted(set(rate.index) | {1}), fill_value=0.0)  # batch 1 is the reference
                ax.plot(rate.index, rate.values, style, marker="o", ms=3, color=color,
                        label=f"{label}" + (" invariant" if path_name == "invariant" else ""))
                drawn = True
        if not drawn:
            _empty(ax, "rows")
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        if sizes:
            _batch_axis(ax, sizes)
    axes[0].set_ylabel("share")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        # below the axes' labels: the saved image grows to hold it (bbox_inches="tight")
        fig.legend(handles, labels, loc="upper center", ncol=min(4, len(labels)), fontsize=8,
                   bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("Batch size vs the prompt decoded alone (all padding sides)")
    return _save(fig, path)


def logit_diff(tables: dict[str, pd.DataFrame], path: Path) -> Path:
    """Distribution of the per-step max |logit difference| against batch 1, over steps that
    differ at all (log scale), per job; the legend gives the share of bitwise-equal steps."""
    steps = tables["steps"]
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for color, (label, rows) in zip(COLORS * 4, _jobs(steps)):
        diff = rows.loc[rows["not_equal"], "max_abs_diff"]
        equal = 1 - rows["not_equal"].mean()
        if len(diff):
            bins = np.logspace(np.log10(max(diff.min(), 1e-12)), np.log10(max(diff.max(), 1e-11)) + 0.1, 30)
            ax.hist(diff, bins=bins, histtype="step", color=color, label=f"{label} ({equal:.0%} equal)")
            drawn = True
        else:
            ax.plot([], [], color=color, label=f"{label} (all {len(rows)} steps equal)")
    if drawn:
        ax.set_xscale("log")
    else:
        _empty(ax, "step that differs from batch 1")
    ax.set_xlabel("max |logit difference| against batch 1 (steps that differ)")
    ax.set_ylabel("steps")
    ax.legend(fontsize=8)
    ax.set_title("How far batching moves the logits (teacher forced, default path)")
    return _save(fig, path)


def first_divergence(tables: dict[str, pd.DataFrame], path: Path) -> Path:
    """Where free-running completions first part from the prompt's alone completion."""
    comp = tables["completions"]
    rows_all = comp[(comp["path"] == "default") & (comp["differs"])] if len(comp) else comp
    fig, ax = plt.subplots(figsize=(7, 4))
    jobs = _jobs(rows_all)
    if not jobs:
        _empty(ax, "completion that differs from alone")
    top = int(rows_all["first_divergence"].max()) + 1 if len(rows_all) else 1
    for color, (label, rows) in zip(COLORS * 4, jobs):
        counts = rows["first_divergence"].value_counts().reindex(range(top), fill_value=0)
        ax.plot(counts.index, counts.values, marker="o", ms=3, color=color, label=f"{label} (n={len(rows)})")
    ax.set_xlabel("token position of the first divergence")
    ax.set_ylabel("completions")
    if jobs:
        ax.legend(fontsize=8)
    ax.set_title("First divergence from the alone completion (free-running greedy)")
    return _save(fig, path)


def unique_completions(tables: dict[str, pd.DataFrame], path: Path) -> Path:
    """Distinct completions of each repeated prompt over its requests (1 = deterministic)."""
    unique = tables["unique"]
    fig, ax = plt.subplots(figsize=(8, 4))
    if unique.empty:
        _empty(ax, "repeated requests")
    else:
        groups = _jobs(unique)
        prompts = sorted(unique["prompt_id"].unique())
        width = 0.8 / max(1, 2 * len(groups))
        k = 0
        for color, (label, rows) in zip(COLORS * 4, groups):
            for path_name, hatch in (("default", None), ("invariant", "//")):
                part = rows[rows["path"] == path_name].set_index("prompt_id").reindex(prompts)
                if part["unique"].isna().all():
                    continue
                ax.bar(np.arange(len(prompts)) + k * width, part["unique"].fillna(0), width, color=color,
                       hatch=hatch, edgecolor="white" if hatch is None else "black",
                       label=label + (" invariant" if path_name == "invariant" else ""))
                k += 1
        ax.set_xticks(np.arange(len(prompts)) + (k - 1) * width / 2)
        ax.set_xticklabels(prompts, rotation=30, ha="right", fontsize=7)
        requests = int(unique["requests"].max())
        ax.set_title(f"Distinct completions per prompt over {requests} requests, each in a random batch")
        ax.legend(fontsize=8)
    ax.set_ylabel("distinct completions")
    return _save(fig, path)


def flips_vs_margin(tables: dict[str, pd.DataFrame], path: Path) -> Path:
    """Argmax flip rate per bin of the alone top-1/top-2 margin, and how many steps fall in each."""
    steps = tables["steps"]
    fig, (ax, ax_n) = plt.subplots(1, 2, figsize=(12, 4))
    finite = steps[np.isfinite(steps["margin"])] if len(steps) else steps
    if finite.empty:
        _empty(ax, "steps")
        _empty(ax_n, "steps")
    else:
        low = max(float(finite["margin"][finite["margin"] > 0].min()) if (finite["margin"] > 0).any() else 1e-6, 1e-8)
        edges = np.concatenate([[0.0], np.logspace(np.log10(low), np.log10(float(finite["margin"].max()) + 1e-9), 16)])
        centers = np.sqrt(np.maximum(edges[:-1], low / 10) * edges[1:])
        for color, (label, rows) in zip(COLORS * 4, _jobs(finite)):
            which = np.clip(np.digitize(rows["margin"], edges) - 1, 0, len(edges) - 2)
            grouped = rows.groupby(which)
            rate = grouped["flip"].mean().reindex(range(len(edges) - 1))
            count = grouped.size().reindex(range(len(edges) - 1), fill_value=0)
            ax.plot(centers, rate.values, marker="o", ms=3, color=color, label=label)
            ax_n.plot(centers, count.values, color=color, label=label)
        for a in (ax, ax_n):
            a.set_xscale("log")
            a.set_xlabel("top-1 minus top-2 logit, alone")
        ax.set_ylabel("argmax flip rate")
        ax_n.set_ylabel("steps")
        ax.legend(fontsize=8)
    ax.set_title("Flips happen where the top two logits are close")
    ax_n.set_title("Margins of the steps measured")
    return _save(fig, path)


def invariant_cost(tables: dict[str, pd.DataFrame], path: Path) -> Path:
    """Free-running decoding speed of the default path and the batch-invariant mode per batch size."""
    timing = tables["timing"]
    free = timing[(timing["measure"] == "free") & (timing["run"] == "first")] if len(timing) else timing
    fig, (ax, ax_r) = plt.subplots(1, 2, figsize=(12, 4))
    if free.empty or not (free["path"] == "invariant").any():
        _empty(ax, "timing of the batch-invariant mode")
        _empty(ax_r, "timing of the batch-invariant mode")
    else:
        sizes = sorted(free["batch_size"].unique())
        for color, (label, rows) in zip(COLORS * 4, _jobs(free)):
            measured = decoding_speed(rows)
            speed = {}
            for path_name, style in (("default", "-"), ("invariant", "--")):
                speed[path_name] = measured[path_name] if path_name in measured.index.get_level_values(0) else \
                    pd.Series(dtype=float)
                ax.plot(speed[path_name].index, speed[path_name].values, style, marker="o", ms=3, color=color,
                        label=f"{label} {path_name}")
            ratio = (speed["default"] / speed["invariant"]).dropna()
            ax_r.plot(ratio.index, ratio.values, marker="o", ms=3, color=color, label=label)
        ax.set_yscale("log")
        ax.set_ylabel("tokens / s (all rows, wall clock)")
        ax_r.axhline(1.0, color="#999999", lw=0.8)
        ax_r.axhline(1.3, color="#999999", lw=0.8, ls=":")
        ax_r.set_ylabel("slowdown of the invariant mode (x)")
        for a in (ax, ax_r):
            _batch_axis(a, sizes)
            a.legend(fontsize=8)
    ax.set_title("Free-running greedy decoding speed")
    ax_r.set_title("Cost of batch invariance")
    return _save(fig, path)


def draw_all(tables: dict[str, pd.DataFrame], out_dir: str | os.PathLike) -> list[Path]:
    out = Path(out_dir)
    drawers = {"rates_vs_batch": rates_vs_batch, "logit_diff": logit_diff, "first_divergence": first_divergence,
               "unique_completions": unique_completions, "flips_vs_margin": flips_vs_margin,
               "invariant_cost": invariant_cost}
    return [drawers[name](tables, out / f"{name}.png") for name in FIGURES]
