"""`nextlab tokenize`: train the byte-level BPE and write token files."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nextlab.cli.common import add_common, load

log = logging.getLogger("nextlab.tokenize")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tokenize",
        help="train the BPE tokenizer and write token files",
        description="Train a byte-level BPE on the training corpus; write tokenizer.json, "
        "train/val token arrays (.npy) and token stats.",
    )
    add_common(parser)
    parser.add_argument("--data", type=Path, required=True, help="data folder (results/<study>/data)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (results/<study>/tokenizer)")
    return parser


def run(args: argparse.Namespace) -> int:
    from nextlab.provenance import data_hash_of
    from nextlab.tokenizer import stage
    from nextlab.tracking import Job, tracked

    study = load(args, uses_torch=False)
    job = Job("tokenize", "tokenize", args.out, params={"tokenizer": study.tokenizer.model_dump(mode="json")},
              data_hash=data_hash_of(args.data), metrics=["stats.json"], artifacts=["stats.json", "tokenizer.json"])
    with tracked(study, job):
        stats = stage.run(study, stage.Inputs(corpus=args.data / "corpus"), args.out)
        job.tags["nextlab.tokenizer_hash"] = stats["tokenizer_hash"]
    log.info("tokenize: vocabulary %d, %d training tokens (%.2f bytes per token), %d validation tokens",
             stats["vocab_size"], stats["train_tokens"], stats["train_bytes_per_token"], stats["val_tokens"])
    return 0
