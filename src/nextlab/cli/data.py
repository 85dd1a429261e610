"""`nextlab data`: build the synthetic world, its corpus and QA sets."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from nextlab.cli.common import add_common, load

log = logging.getLogger("nextlab.data")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "data",
        help="generate the synthetic world, corpus and QA sets",
        description="Generate the synthetic world (people and facts), its training/validation "
        "corpus with controlled mention counts, the QA sets and data stats.",
    )
    add_common(parser)
    parser.add_argument("--out", type=Path, required=True, help="output folder (results/<study>/data)")
    return parser


def run(args: argparse.Namespace) -> int:
    from nextlab.data.stage import run_data
    from nextlab.tracking import stage_run

    study = load(args, uses_torch=False)
    start = time.perf_counter()
    stats = run_data(study, args.out)
    stats_time = time.perf_counter() - start
    log.info("data: %s", json.dumps(stats))
    with stage_run(study, "data", "data", params={"data": study.data.model_dump(mode="json"), "seed": study.seed},
                   data_hash=stats["data_hash"]) as run:
        run.log_metrics({**stats, "seconds": stats_time})
        for name in ("stats.json", "provenance.json"):
            run.log_artifact(args.out / name)
    return 0
