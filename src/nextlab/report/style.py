"""One look for every figure: the Agg backend, a small style sheet, and how figures are saved.

Every figure of the report is drawn inside `style()` and written by `save`, so fonts, sizes,
colours and resolution agree across stages. A figure that cannot be drawn (a missing table or
column) is replaced by `placeholder`, an image that says what is missing, so the report and the
workflow still get one file per figure.

    >>> with style():
    ...     fig, ax = new_figure()
    ...     _ = ax.plot([0, 1], [1, 0])
    >>> save(fig, "/tmp/example.png")   # doctest: +SKIP
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from nextlab.io import atomic_path

DPI = 120
SIZE = (6.4, 4.0)  # inches: 768 x 480 pixels at DPI, readable inline in the HTML report

# A colour-blind-safe cycle (Okabe-Ito); schemes and probes keep their colour across figures.
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
OUTCOME_COLORS = {"correct": "#009E73", "wrong": "#D55E00", "abstain": "#999999"}


def _pyplot():
    """matplotlib on the Agg backend, imported on first use (the workflow imports the figure
    registry at parse time to plan the figure files, and must not pay for matplotlib there)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: the report runs headless, in jobs and tests
    import matplotlib.pyplot as plt

    return plt


def rc() -> dict[str, Any]:
    import matplotlib

    return {
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "figure.figsize": SIZE,
        "font.size": 10,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.fontsize": 9,
        "xtick.labelsize": 9,
        "ytick.labelsize": 9,
        "axes.grid": False,  # figures that want a grid ask for one: it would cross a heatmap's cells
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": matplotlib.cycler(color=COLORS),
        "lines.linewidth": 1.6,
        "lines.markersize": 5,
        "savefig.bbox": "tight",
        "svg.hashsalt": "nextlab",  # stable output for identical data
    }


@contextmanager
def style() -> Iterator[None]:
    """Draw inside this block; figures made here share the report's style."""
    plt = _pyplot()
    with plt.style.context("default"), plt.rc_context(rc()):
        yield


def new_figure(ncols: int = 1, nrows: int = 1, **kwargs):
    """`plt.subplots` at the report's size (wider for several columns)."""
    plt = _pyplot()
    width, height = SIZE
    kwargs.setdefault("figsize", (width * max(1, ncols) * (0.75 if ncols > 1 else 1), height * nrows))
    return plt.subplots(nrows, ncols, squeeze=nrows * ncols == 1, **kwargs)


def save(fig, path: str | os.PathLike) -> None:
    """Write `fig` as PNG atomically and free it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    _pyplot().close(fig)


def placeholder(title: str, message: str, path: str | os.PathLike) -> None:
    """An image in place of a figure that could not be drawn, saying why and how to fix it."""
    with style():
        fig, ax = _pyplot().subplots(figsize=SIZE)
        ax.set_axis_off()
        wrapped = "\n".join(textwrap.fill(line, 90, subsequent_indent="    ") for line in message.splitlines())
        ax.text(0.5, 0.62, f"{title}: not available", ha="center", va="center", fontsize=12, weight="bold",
                transform=ax.transAxes)
        ax.text(0.5, 0.35, wrapped, ha="center", va="center", fontsize=8, family="monospace",
                transform=ax.transAxes)
        with atomic_path(path) as tmp:  # a fixed canvas: no tight bbox, which draws everything twice
            fig.savefig(tmp, format="png", bbox_inches=None, metadata={"Software": None})
        _pyplot().close(fig)
