"""`nextlab tokenize`: train the byte-level BPE and write token files."""

from __future__ import annotations

import argparse
import json
import logging
import time
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
    from nextlab.tokenizer.stage import run_tokenize
    from nextlab.tracking import stage_run

    study = load(args, uses_torch=False)
    data_hash = data_hash_of(args.data)
    start = time.perf_counter()
    stats = run_tokenize(study, args.data / "corpus", args.out)
    seconds = time.perf_counter() - start
    log.info("tokenize: %s", json.dumps(stats))
    with stage_run(study, "tokenize", "tokenize", params={"tokenizer": study.tokenizer.model_dump(mode="json")},
                   data_hash=data_hash, tags={"nextlab.tokenizer_hash": stats["tokenizer_hash"]}) as run:
        run.log_metrics({k: v for k, v in stats.items() if k != "tokenizer_hash"} | {"seconds": seconds})
        run.log_artifact(args.out / "stats.json")
        run.log_artifact(args.out / "tokenizer.json")
    return 0
