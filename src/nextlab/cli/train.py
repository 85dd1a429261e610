"""`nextlab train`: pretrain one model of the study by next-token prediction."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from nextlab.cli.common import add_common, load

log = logging.getLogger("nextlab.train")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="pretrain a GPT model on the token files",
        description="Pretrain one model (a key of params `models:`) by next-token prediction. Writes "
        "ckpt.pt, metrics.json, curve.csv, loss.png and facts.csv. Checkpoints every "
        "train.checkpoint_every steps to last.pt and resumes from it when rerun.",
    )
    add_common(parser)
    parser.add_argument("--model", required=True, help="model name, a key of params `models:`")
    parser.add_argument("--tokens", type=Path, required=True,
                        help="tokenizer folder with tokenizer.json, train.npy, val.npy (results/<study>/tokenizer)")
    parser.add_argument("--data", type=Path, default=None,
                        help="data folder (results/<study>/data) for the fact-accuracy probes; omit to skip them")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder (results/<study>/models/<model>/pretrain)")
    parser.add_argument("--fresh", action="store_true", help="ignore a last.pt left by an interrupted run")
    return parser


def run(args: argparse.Namespace) -> int:
    from nextlab.train.stage import run_train

    study = load(args)
    metrics = run_train(study, args.model, args.tokens, args.out, data_dir=args.data, fresh=args.fresh)
    log.info("train %s: %s", args.model, json.dumps(metrics, sort_keys=True))
    return 0
