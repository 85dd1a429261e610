"""`nextlab mechanisms`: what the trained model does inside, and how decoding changes its output.

  nextlab mechanisms --model M --pretrain ckpt.pt --sft ckpt.pt --data D --tokenizer T --out DIR
      ablates each MLP and attention head of the pretrained model (fact recall and the other
      tokens' loss), reads where each head looks from a question's answer position, and decodes
      questions (fine-tuned model) and biographies (pretrained model) under every decoding
      strategy of params `mechanisms.strategies`; tables, metrics.json and provenance.json in DIR.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nextlab.cli.common import add_common, load

log = logging.getLogger("nextlab.mechanisms")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "mechanisms",
        help="ablate MLPs and heads, read head roles, compare decoding strategies",
        description=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument("--model", required=True, help="model name (a key of params models:)")
    parser.add_argument("--pretrain", type=Path, required=True, help="the pretrained checkpoint")
    parser.add_argument("--sft", type=Path, required=True, help="the fine-tuned checkpoint (answers questions)")
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
    from nextlab.config.mechanisms import TABLES
    from nextlab.mechanisms import stage
    from nextlab.provenance import data_hash_of

    job = Job("mechanisms", f"mechanisms/{args.model}", args.out,
              tags={"nextlab.model": args.model, "nextlab.seed": study.seed},
              params={"mechanisms": study.mechanisms.model_dump(mode="json"), "model": args.model},
              data_hash=data_hash_of(args.data), metrics=["metrics.json", ["timing.json", "time"]],
              artifacts=["metrics.json", *(f"{name}.parquet" for name in TABLES)])
    with tracked(study, job):
        inputs = stage.Inputs(pretrain=args.pretrain, sft=args.sft, data=args.data, tokenizer=args.tokenizer)
        stage.run(study, inputs, args.out, model=args.model)
    return 0
