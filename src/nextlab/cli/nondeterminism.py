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
    from nextlab.tracking import Job, tracked

    study = load(args, uses_torch=not args.summary)
    if args.model not in study.models:
        raise NextlabError(f"model {args.model!r} is not in params models: {sorted(study.models)}")
    tags = {"nextlab.model": args.model, "nextlab.scheme": study.nondeterminism.checkpoint}
    params = {"nondeterminism": study.nondeterminism.model_dump(mode="json")}
    if args.summary:
        if not args.jobs:
            raise NextlabError("nondeterminism --summary needs --jobs")
        from nextlab.io import read_json
        from nextlab.nondeterminism import summary

        # the jobs' data hash: the summary reads their tables, not the data folder
        data_hash = read_json(args.jobs[0] / "provenance.json").get("data_hash")
        job = Job("nondeterminism", f"nondeterminism/{args.model}/summary", args.out, tags=tags, params=params,
                  data_hash=data_hash, metrics=["metrics.json"], artifacts=["metrics.json"])
        with tracked(study, job):
            flat = summary.run(study, summary.Inputs(jobs=args.jobs), args.out)
            job.artifacts += [[f"figures/{p.name}", "figures"] for p in sorted((args.out / "figures").glob("*.png"))]
        log.info("nondeterminism summary of %s: %d jobs, %d figures, %d metrics", args.model, len(args.jobs),
                 len(job.artifacts) - 1, len(flat))
        return 0
    missing = [f"--{n}" for n in ("dtype", "attention", "ckpt", "data", "tokenizer") if getattr(args, n) is None]
    if missing:
        raise NextlabError(f"nondeterminism needs {', '.join(missing)}")
    from nextlab.io import read_json
    from nextlab.nondeterminism import stage
    from nextlab.provenance import data_hash_of

    threads = args.threads or 1
    job = Job("nondeterminism", f"nondeterminism/{stage.job_name(args.model, args.dtype, args.attention, threads)}",
              args.out, tags={**tags, "nextlab.seed": study.seed, "nextlab.dtype": args.dtype,
                              "nextlab.attention": args.attention, "nextlab.threads": threads},
              params={**params, "model": args.model, "dtype": args.dtype, "attention": args.attention,
                      "threads": threads},
              data_hash=data_hash_of(args.data), metrics=["metrics.json", ["timing.json", "time"]],
              curves=[["by_batch_size.csv", "by_batch_size"]],  # the batch size is the step
              artifacts=["metrics.json", "env.json", "completions.parquet", "logits.parquet", "unique.parquet",
                         "timing.parquet"])
    with tracked(study, job):
        stage.run(study, stage.Inputs(ckpt=args.ckpt, data=args.data, tokenizer=args.tokenizer), args.out,
                  model=args.model, dtype=args.dtype, attention=args.attention, threads=threads)
        env = read_json(args.out / "env.json")
        job.tags |= {"nextlab.device": env["device"], "nextlab.cpu": env["cpu_model"], "nextlab.torch": env["torch"],
                     "nextlab.sdpa_backend": env["sdpa_backend_masked"]}
    return 0
