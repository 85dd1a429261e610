"""`nextlab nondeterminism`: does a prompt's greedy completion depend on the batch it is in?

Two modes:
  nextlab nondeterminism --model M --dtype float32 --attention sdpa --threads 1 --ckpt ckpt.pt
                         --data D --tokenizer T --out DIR
      one job (one model x dtype x attention path x thread count): every target prompt alone
      and inside random batches of every batch size and padding side, teacher forced with and
      without the KV cache and free running; the run-to-run and batch-invariant controls; the
      repeated-requests experiment; tables, metrics.json and env.json in DIR;
  nextlab nondeterminism --summary --model M --jobs DIR1 DIR2 ... --out DIR
      the figures over a model's jobs and one flat metrics.json.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nextlab.cli.common import add_common, load
from nextlab.config.nondeterminism import ATTENTION_PATHS, DTYPES

log = logging.getLogger("nextlab.nondeterminism")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "nondeterminism",
        help="measure how batch size changes greedy decoding, and the batch-invariant mode",
        description=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument("--model", required=True, help="model name (a key of params models:)")
    parser.add_argument("--dtype", choices=DTYPES, help="precision of the default path")
    parser.add_argument("--attention", choices=ATTENTION_PATHS, help="attention kernel of the default path")
    parser.add_argument("--ckpt", type=Path, help="the checkpoint to decode")
    parser.add_argument("--data", type=Path, help="data folder (results/<study>/data)")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer folder (results/<study>/tokenizer)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--summary", action="store_true", help="summarise job folders instead")
    parser.add_argument("--jobs", type=Path, nargs="+", help="with --summary: the job folders")
    return parser


def run(args: argparse.Namespace) -> int:
    from nextlab.errors import NextlabError

    study = load(args, uses_torch=not args.summary)
    if args.model not in study.models:
        raise NextlabError(f"model {args.model!r} is not in params models: {sorted(study.models)}")
    if args.summary:
        if not args.jobs:
            raise NextlabError("nondeterminism --summary needs --jobs")
        from nextlab.nondeterminism.summary import run_summary

        run_summary(study, args.model, args.jobs, args.out)
        return 0
    missing = [f"--{n}" for n in ("dtype", "attention", "ckpt", "data", "tokenizer") if getattr(args, n) is None]
    if missing:
        raise NextlabError(f"nondeterminism needs {', '.join(missing)}")
    from nextlab.nondeterminism.stage import run_job

    threads = args.threads or 1
    run_job(study, args.model, args.dtype, args.attention, threads, args.ckpt, args.data, args.tokenizer, args.out)
    return 0
