"""`nextlab relog`: send a results folder to the MLflow tracking server again.

Every job writes its run record (`run.json`) beside its results, tracked or not. `relog` sends
each job the server does not have yet and skips the others, so running it twice sends nothing the
second time: use it after a study ran with the server down, or to fill a new server.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("nextlab.relog")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "relog",
        help="send a results folder's runs to the MLflow server (idempotent)",
        description=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--results", type=Path, nargs="+", required=True,
                        help="results folder(s), e.g. results/default reports/default (the report's run)")
    parser.add_argument("--dry-run", action="store_true", help="count what would be sent, send nothing")
    return parser


def run(args: argparse.Namespace) -> int:
    from nextlab.tracking import relog, tracking_uri

    counts = relog(list(args.results), dry_run=args.dry_run)
    verb = "would send" if args.dry_run else "sent"
    log.info("relog %s -> %s: %s %d run(s), %d already there", " ".join(map(str, args.results)), tracking_uri(), verb,
             counts["sent"], counts["present"])
    print(f"{verb} {counts['sent']} run(s), {counts['present']} already on the server")
    return 0
