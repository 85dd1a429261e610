"""Progress bars for the stages that run longer than a few seconds.

A bar draws only when stderr is a terminal (a Snakemake job writes to its log file: no bar, the
stage's own log lines instead), and the CLI routes log records through tqdm so a log line never
tears a bar apart.

    >>> with bar(3, "steps") as b:          # quiet here: doctest's stderr is no terminal
    ...     for _ in range(3):
    ...         b.update(1)
"""

from __future__ import annotations

import sys
from typing import Any


def enabled() -> bool:
    return sys.stderr.isatty()


def bar(total: int, unit: str, desc: str | None = None, initial: int = 0, show: bool | None = None) -> Any:
    """A tqdm bar over `total` units (quiet unless stderr is a terminal, or `show` says so)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit=unit, desc=desc, dynamic_ncols=True, leave=False,
                disable=not (enabled() if show is None else show))
