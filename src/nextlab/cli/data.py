"""`nextlab data`: build the synthetic world, its corpus and QA sets."""

from __future__ import annotations

import argparse
import logging
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
    from nextlab.data import stage
    from nextlab.tracking import Job, tracked

    study = load(args, uses_torch=False)
    job = Job("data", "data", args.out, params={"data": study.data.model_dump(mode="json"), "seed": study.seed},
              metrics=["stats.json"], artifacts=["stats.json", "provenance.json"])
    with tracked(study, job):
        stats = stage.run(study, None, args.out)
        job.data_hash = stats["data_hash"]
    log.info("data: %d people, %d never-seen names, %d training documents, singleton rate %.3f, data hash %s",
             stats["people"], stats["unseen_names"], stats["train_documents"], stats["singleton_rate"],
             stats["data_hash"])
    return 0
