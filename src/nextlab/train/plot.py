"""The loss curve: curve.csv rows in, loss.png out."""

from __future__ import annotations

import os
from typing import Any

from nextlab.io import atomic_path


def plot_loss(curve: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Train loss per step (thin) and validation loss at evaluation steps (markers), log-scaled steps."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    train = [(r["step"], r["train_loss"]) for r in curve if r.get("train_loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in curve if r.get("val_loss") is not None]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    if train:
        ax.plot(*zip(*train), lw=0.8, alpha=0.7, label="train")
    if val:
        ax.plot(*zip(*val), marker="o", ms=3, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
