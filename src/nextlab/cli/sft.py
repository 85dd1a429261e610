"""`nextlab sft`: supervised fine-tuning of a pretrained model on the fine-tune split's questions
(or, with --confidence, teaching the SFT model to state a confidence: the calibrated scheme's start)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nextlab.cli.common import add_common, load

log = logging.getLogger("nextlab.sft")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sft",
        help="supervised fine-tuning on QA pairs (loss on answer tokens only)",
        description="Fine-tune the pretrained checkpoint on the fine-tune split's questions: people "
        "with their answers, never-seen names with \"I don't know\". Writes ckpt.pt, curve.csv, metrics.json.",
    )
    add_common(parser)
    parser.add_argument("--model", required=True, help="model name (a key of params models:)")
    parser.add_argument("--init", type=Path, required=True,
                        help="checkpoint to start from: the pretrained one (.../pretrain/ckpt.pt), or with "
                        "--confidence the SFT one (.../sft/ckpt.pt)")
    parser.add_argument("--confidence", action="store_true",
                        help="teach the calibrated scheme's stated-confidence format to the SFT model instead")
    parser.add_argument("--data", type=Path, required=True, help="data folder (results/<study>/data)")
    parser.add_argument("--tokenizer", type=Path, required=True, help="tokenizer folder (results/<study>/tokenizer)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder (results/<study>/models/<model>/sft or .../sft_confidence)")
    return parser


def run(args: argparse.Namespace) -> int:
    from nextlab.io import require_file, sha256_file
    from nextlab.posttrain import sft
    from nextlab.provenance import data_hash_of
    from nextlab.tracking import Job, tracked

    study = load(args)
    stage = "sft_confidence" if args.confidence else "sft"
    fn = sft.run_confidence if args.confidence else sft.run
    job = Job(stage, f"{stage}/{args.model}", args.out, tags={"nextlab.model": args.model},
              params={"sft": study.sft.model_dump(mode="json"), "model": args.model},
              data_hash=data_hash_of(args.data), metrics=["metrics.json", ["timing.json", "time"]], curves=["curve.csv"],
              artifacts=["metrics.json", "curve.csv", ["ckpt.pt", "model"]],
              upstream={"checkpoint": sha256_file(require_file(args.init, "checkpoint"))[:16]})
    with tracked(study, job) as run:
        metrics = fn(study, sft.Inputs(init=args.init, data=args.data, tokenizer=args.tokenizer), args.out,
                     model=args.model, on_step=run.log_step)
    log.info("%s %s: %d steps, final loss %.4f", stage, args.model, metrics["steps"], metrics["train_loss"])
    return 0
