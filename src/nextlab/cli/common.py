"""Flags and helpers shared by the stage subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nextlab.config import Study, load_study, study_from_sections
from nextlab.errors import ParamsError


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_common(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--params", type=Path, help="params YAML file of the study (e.g. params/default.yaml)")
    source.add_argument("--job", metavar="JSON",
                        help="the params sections this job reads, as JSON (what the workflow passes: the "
                        "job's rerun fingerprint, so a result follows exactly the params it was made from)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch intra-op threads (the Snakemake rule's threads)")


def load(args: argparse.Namespace, uses_torch: bool = True) -> Study:
    """The validated study; a stage that runs torch also gets the rule's thread count.

    Stages that never touch torch pass `uses_torch=False`: importing it costs ~1.5 s per job,
    which is most of a small job's time.
    """
    if args.job is not None:
        try:
            sections = json.loads(args.job)
        except json.JSONDecodeError as err:
            raise ParamsError(f"--job: not valid JSON ({err.msg} at character {err.pos})") from None
        study = study_from_sections(sections, "--job")
    else:
        from nextlab.config.resources import check_fits

        study = load_study(args.params)
        check_fits(study, str(args.params))
    if uses_torch and getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    return study
