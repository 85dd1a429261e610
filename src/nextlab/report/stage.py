"""The report stage as a function of files in, files out: `run(study, Inputs(results, logs), out)`.

It reads every stage's tables under the study's results folder (and its logs, for the per-stage
time table) and writes the figures, report.md and report.html into `out`, and findings.json,
headline.json and the figures' data tables into `data_out` (default: `out`). `nextlab report
--only` redraws single figures through `build_report` itself: a quick look, not a job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nextlab.errors import NextlabError
from nextlab.io import read_json
from nextlab.report.build import build_report
from nextlab.report.registry import plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inputs:
    results: Path  # the study's results folder: every stage's tables
    logs: Path | None = None  # the study's logs folder, for the per-stage time table


def run(study: Any, inputs: Inputs, out: str | Path, *, data_out: str | Path | None = None,
        params_file: str | Path | None = None, stages: list[str] | None = None) -> dict[str, Any]:
    """Draw every planned figure (of `stages`, default all) and write the report; return the
    findings. A figure that fails to draw is an error, raised once every other one is drawn."""
    report = build_report(study, inputs.results, out, data_out=data_out, params_file=params_file, stages=stages,
                          only=None, logs=inputs.logs)
    log_figures(report)
    if report.failed:
        names = ", ".join(r.instance.figure.name for r in report.failed)
        raise NextlabError(f"{len(report.failed)} figure(s) failed to draw ({names}); see the log above")
    log.info("report: %d figures in %.1fs -> %s, %s", len(report.figures), report.seconds, report.markdown,
             report.html)
    return read_json(report.findings)


def figure_files(study: Any, out: str | Path, stages: list[str] | None = None) -> list[Path]:
    """The figure files `run` draws into `out`, in the order it draws them."""
    return [Path(out) / "figures" / inst.filename for inst in plan(study, stages)]


def log_figures(report: Any) -> None:
    for r in report.figures:
        log.info("%-8s %-40s %.2fs%s", r.status, r.png, r.seconds, f"  ({r.problem.splitlines()[0]})" if r.problem else "")
