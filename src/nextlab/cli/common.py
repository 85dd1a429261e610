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


def load(args: argparse.Namespace) -> Study:
    study = load_study(args.params)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    return study


def study_dir(study: Study, root: Path = Path("results")) -> Path:
    return root / study.study
