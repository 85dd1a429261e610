"""Flags and helpers shared by the stage subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from nextlab.config import Study, load_study


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", type=Path, required=True, help="params YAML file of the study (e.g. params/default.yaml)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (the Snakemake rule's threads)"
    )


def load(args: argparse.Namespace, uses_torch: bool = True) -> Study:
    """The validated study; a stage that runs torch also gets the rule's thread count.

    Stages that never touch torch pass `uses_torch=False`: importing it costs ~1.5 s per job,
    which is most of a small job's time.
    """
    study = load_study(args.params)
    if uses_torch and getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    return study


def study_dir(study: Study, root: Path = Path("results")) -> Path:
    return root / study.study
