"""`nextlab report`: every figure and the report of a study, from its results tables alone."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nextlab.cli.common import add_common, load

log = logging.getLogger("nextlab.report")


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help="draw every figure and write the report (no model is loaded)",
        description="Draw every figure of the study from the tables under results/<study>/ into "
        "<out>/figures/, and write <out>/report.md and a self-contained <out>/report.html stating "
        "each claim, its experiment, its finding with a 95%% interval and its figures. A figure whose "
        "input is missing is replaced by an image saying what is missing. Takes seconds; trains nothing.",
    )
    add_common(parser)
    parser.add_argument("--results", type=Path, default=None, help="the study's results (default results/<study>)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default reports/<study>)")
    parser.add_argument("--data-out", type=Path, default=None,
                        help="folder for findings.json, headline.json and the figures' data tables (default: --out)")
    parser.add_argument("--logs", type=Path, default=None,
                        help="the study's logs (default logs/<study>), for the per-stage time table")
    parser.add_argument("--stages", default=None,
                        help="comma-separated stages whose figures to draw (default: all)")
    parser.add_argument("--only", default=None,
                        help="comma-separated figure names to redraw, e.g. pretrain-loss (documents untouched)")
    return parser


def run(args: argparse.Namespace) -> int:
    import os

    from nextlab.provenance import data_hash_of
    from nextlab.report import stage
    from nextlab.tracking import Job, tracked

    study = load(args, uses_torch=False)
    results = args.results or Path("results") / study.study
    out = args.out or Path("reports") / study.study
    data_out = args.data_out or out
    logs = args.logs or Path("logs") / study.study
    if args.only:
        from nextlab.report import build_report

        report = build_report(study, results, out, data_out=data_out, params_file=args.params,
                              stages=_names(args.stages), only=_names(args.only), logs=logs)
        stage.log_figures(report)
        log.info("redrew %d/%d figures in %.1fs", sum(r.status == "ok" for r in report.figures), len(report.figures),
                 report.seconds)
        return 1 if report.failed else 0
    # findings.json only: headline.json is its rounded subset (for `dvc metrics show`), and logging
    # both would give one key two values, of which a store keeps either.
    job = Job("report", "report", data_out, data_hash=data_hash_of(results / "data", required=False),
              metrics=["findings.json", ["timing.json", "time"]])
    with tracked(study, job):
        stage.run(study, stage.Inputs(results=results, logs=logs), out, data_out=data_out, params_file=args.params,
                  stages=_names(args.stages))
        figures = stage.figure_files(study, out, _names(args.stages))
        job.params = {"figures": len(figures)}
        job.artifacts = [os.path.relpath(out / "report.html", data_out)] + [
            [os.path.relpath(png, data_out), "figures"] for png in figures]
    return 0
