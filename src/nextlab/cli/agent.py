"""`nextlab agent`: a model plus a tool plus a loop.

  nextlab agent --model M --sft ckpt.pt --data D --tokenizer T --out DIR
      fine-tunes the fine-tuned model to call lookup(name) on the fine-tune split's questions
      (tool-use traces), then runs it in the agent loop (params `agent.max_steps`) on the
      evaluation questions beside the same fine-tuned model answering without the tool;
      ckpt.pt, episodes.parquet, curve.parquet, metrics.json and provenance.json in DIR.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nextlab.cli.common import add_common, load

log = logging.getLogger("nextlab.agent")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "agent",
        help="teach the model a lookup tool and run it in an agent loop",
        description=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument("--model", required=True, help="model name (a key of params models:)")
    parser.add_argument("--sft", type=Path, required=True, help="the fine-tuned checkpoint")
    parser.add_argument("--data", type=Path, required=True, help="data folder (results/<study>/data)")
    parser.add_argument("--tokenizer", type=Path, required=True, help="tokenizer folder (results/<study>/tokenizer)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    return parser


def run(args: argparse.Namespace) -> int:
    from nextlab.errors import NextlabError
    from nextlab.tracking import Job, tracked

    study = load(args)
    if args.model not in study.models:
        raise NextlabError(f"model {args.model!r} is not in params models: {sorted(study.models)}")
    from nextlab.agent import stage
    from nextlab.provenance import data_hash_of

    job = Job("agent", f"agent/{args.model}", args.out,
              tags={"nextlab.model": args.model, "nextlab.seed": study.seed},
              params={"agent": study.agent.model_dump(mode="json"), "model": args.model},
              data_hash=data_hash_of(args.data), metrics=["metrics.json", ["timing.json", "time"]],
              artifacts=["metrics.json", "episodes.parquet", "curve.parquet"])
    with tracked(study, job):
        stage.run(study, stage.Inputs(sft=args.sft, data=args.data, tokenizer=args.tokenizer), args.out,
                  model=args.model)
    return 0
