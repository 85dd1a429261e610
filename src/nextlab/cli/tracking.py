"""`nextlab tracking`: open or close one pipeline invocation's parent MLflow run by hand (the
Snakefile does both itself; this is for other runners), or print the UI's links to a study."""

from __future__ import annotations

import argparse
from pathlib import Path

from nextlab.cli.common import add_common, load


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tracking",
        help="start/end the pipeline's MLflow parent run",
        description="Create the study's MLflow experiment and a parent run for one pipeline "
        "invocation (before any parallel job), or mark it ended.",
    )
    parser.add_argument("action", choices=["start", "end", "links"],
                        help="start: create; end: send the jobs' runs and close the parent run; links: print the UI's "
                        "links to the study's runs and comparisons")
    add_common(parser)
    parser.add_argument("--status", default="FINISHED", choices=["FINISHED", "FAILED", "KILLED"])
    parser.add_argument("--logs", type=Path, default=Path("logs"), help="logs root (default: logs)")
    return parser


def run(args: argparse.Namespace) -> int:
    from nextlab import tracking

    study = load(args, uses_torch=False)
    if args.action == "start":
        info = tracking.start_invocation(study, args.logs)
        print(info.get("parent_run_id") or f"untracked: {info.get('off')}")
    elif args.action == "end":
        tracking.end_invocation(study, args.status, args.logs)
    else:
        from nextlab.report.mlflow_view import study_links

        links = study_links(study)
        print("\n".join(links) if links else f"no MLflow experiment {tracking.experiment_name(study)!r} at "
              f"{tracking.tracking_uri()} yet: run the study first")
    return 0
