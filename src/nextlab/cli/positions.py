"""`nextlab positions`: does the model need positional information to know word order?

  nextlab positions --model M --variant V --tokens T --data D --out DIR
      pretrains model M's shape with variant V of params `positions.variants` (learned, rotary or
      no positions, or the order-blind control: no positions and no causal mask) for
      `positions.steps` steps, then measures held-out loss, fact recall against candidate values,
      and whether each relation's true direction ("A mentored B") beats its reverse; ckpt.pt,
      tables, metrics.json and provenance.json in DIR.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nextlab.cli.common import add_common, load

log = logging.getLogger("nextlab.positions")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "positions",
        help="pretrain positional variants and probe word order",
        description=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument("--model", required=True, help="model name (a key of params models:)")
    parser.add_argument("--variant", required=True, help="learned, rotary, none or order_blind")
    parser.add_argument("--tokens", type=Path, required=True, help="tokenize stage folder (results/<study>/tokenizer)")
    parser.add_argument("--data", type=Path, required=True, help="data folder (results/<study>/data)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    return parser


def run(args: argparse.Namespace) -> int:
    from nextlab.errors import NextlabError
    from nextlab.tracking import Job, tracked

    study = load(args)
    if args.model not in study.models:
        raise NextlabError(f"model {args.model!r} is not in params models: {sorted(study.models)}")
    from nextlab.config.positions import TABLES, VARIANTS
    from nextlab.positions import stage
    from nextlab.provenance import data_hash_of

    if args.variant not in VARIANTS:
        raise NextlabError(f"--variant {args.variant!r}: allowed {list(VARIANTS)}")
    job = Job("positions", f"positions/{args.model}/{args.variant}", args.out,
              tags={"nextlab.model": args.model, "nextlab.variant": args.variant, "nextlab.seed": study.seed},
              params={"positions": study.positions.model_dump(mode="json"), "model": args.model,
                      "variant": args.variant},
              data_hash=data_hash_of(args.data), metrics=["metrics.json", ["timing.json", "time"]],
              artifacts=["metrics.json", *(f"{name}.parquet" for name in TABLES)])
    with tracked(study, job):
        stage.run(study, stage.Inputs(tokens=args.tokens, data=args.data), args.out, model=args.model,
                  variant=args.variant)
    return 0
