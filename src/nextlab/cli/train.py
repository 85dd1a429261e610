"""`nextlab train`: pretrain one model of the study by next-token prediction."""

from __future__ import annotations

import argparse
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


# MLflow checkpoints above this size are referenced by path instead of copied into the store.
MAX_LOGGED_CHECKPOINT = 200 * 2**20


def run(args: argparse.Namespace) -> int:
    from nextlab.errors import NextlabError
    from nextlab.io import read_json
    from nextlab.provenance import data_hash_of
    from nextlab.tracking import Job, tracked
    from nextlab.train import stage
    from nextlab.train.distributed import Ranks

    study = load(args)
    if args.model not in study.models:
        raise NextlabError(f"models.{args.model}: no such model in params; defined: {sorted(study.models)}")
    inputs = stage.Inputs(tokens=args.tokens, data=args.data)
    if not Ranks.from_env().is_main:
        # Under torchrun only rank 0 writes files and tracks; the others train beside it.
        stage.run(study, inputs, args.out, model=args.model, fresh=args.fresh, progress=False)
        return 0
    job = Job("train", f"train/{args.model}", args.out,
              tags={"nextlab.model": args.model, "nextlab.scheme": "pretrain", "nextlab.seed": study.seed,
                    "nextlab.tokenizer_hash": stage.tokenizer_hash(args.tokens)},
              params={"model": study.models[args.model].model_dump(mode="json"),
                      "train": study.train.model_dump(mode="json"), "seed": study.seed, "device": study.device},
              data_hash=data_hash_of(args.data, required=False) if args.data else None,
              metrics=["metrics.json", ["timing.json", "time"]], curves=["curve.csv", ["timing.csv", "time"]],
              artifacts=["metrics.json", "curve.csv", "loss.png", "facts.csv"], live=True)
    with tracked(study, job) as run:
        metrics = stage.run(study, inputs, args.out, model=args.model, fresh=args.fresh, on_step=run.log_step)
        ckpt = args.out / "ckpt.pt"
        if ckpt.stat().st_size <= MAX_LOGGED_CHECKPOINT:
            job.artifacts.append(["ckpt.pt", "model"])
        else:
            job.tags["nextlab.checkpoint"] = str(ckpt.resolve())
    speed = read_json(args.out / "timing.json")["tokens_per_s"]
    log.info("train %s: %d steps, train loss %.4f, validation loss %s, %.0f tokens/s", args.model,
             metrics["steps"], metrics["train_loss"],
             f"{metrics['val_loss']:.4f}" if metrics.get("val_loss") is not None else "n/a", speed)
    return 0
