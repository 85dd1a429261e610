"""The `nextlab` command: one subcommand per stage, the only thing the workflow calls.

The stages are those of `nextlab.stages`, in its order; beside them a few commands that are not
stages (sampling from a model, the tracking store). Each lives in its own module under `nextlab.cli`
with two functions:
`add_parser(subparsers)` registers the subcommand and its flags, and `run(args) -> int` does the
work. A `NextlabError` is printed as one clear message (no traceback) and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from nextlab import __version__, stages
from nextlab.errors import NextlabError

# The stages in the order of the data flow (`nextlab --help` lists them so), then the other commands.
SUBCOMMANDS = [*stages.NAMES, "sample", "tracking", "relog"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line naming it (no usage dump), like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nextlab",
        description="The next-token lab: each subcommand is one stage of the study.",
    )
    parser.add_argument("--version", action="version", version=f"nextlab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="<stage>", required=True)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"nextlab.cli.{name}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


# Set before torch loads MKL and OpenMP: the same thread count every call (no "dynamic" thread
# counts chosen at run time) and MKL's conditional numerical reproducibility, so a job's numbers
# do not depend on memory alignment or load. On the machines measured this changed no bit and no
# speed (see README, "Reproducibility").
REPRODUCIBLE_ENV = {"MKL_CBWR": "AUTO,STRICT", "MKL_DYNAMIC": "FALSE", "OMP_DYNAMIC": "FALSE"}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    for key, value in REPRODUCIBLE_ENV.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from nextlab.provenance import set_entry_stage

    set_entry_stage(args.command)
    from nextlab.progress import enabled

    try:
        if enabled():
            from tqdm.contrib.logging import logging_redirect_tqdm

            with logging_redirect_tqdm():
                return int(args._run(args) or 0)
        return int(args._run(args) or 0)
    except NextlabError as err:
        print(f"nextlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nextlab {args.command}: interrupted", file=sys.stderr)
        return 130
