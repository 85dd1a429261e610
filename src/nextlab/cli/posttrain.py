"""`nextlab posttrain`: policy-gradient post-training of the SFT model under one reward scheme."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nextlab.cli.common import add_common, load

log = logging.getLogger("nextlab.posttrain")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "posttrain",
        help="post-train the SFT model under one reward scheme and seed",
        description="On-policy policy gradient (group baseline, KL to the SFT model) under a reward "
        "scheme: binary, penalized-<t>, calibrated. Writes ckpt.pt, steps.csv (per-step reward, "
        "answer/abstain rates, KL), metrics.json.",
    )
    add_common(parser)
    parser.add_argument("--model", required=True, help="model name (a key of params models:)")
    parser.add_argument("--scheme", required=True, help="binary, penalized-<t> (0 < t < 1) or calibrated")
    parser.add_argument("--seed", type=int, required=True, help="post-training seed")
    parser.add_argument("--init", type=Path, required=True,
                        help="checkpoint to start from: .../sft/ckpt.pt (.../sft_confidence/ckpt.pt for calibrated)")
    parser.add_argument("--data", type=Path, required=True, help="data folder (results/<study>/data)")
    parser.add_argument("--tokenizer", type=Path, required=True, help="tokenizer folder (results/<study>/tokenizer)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder (results/<study>/models/<model>/posttrain/<scheme>/seed<k>)")
    return parser


def run(args: argparse.Namespace) -> int:
    from nextlab.config.posttrain import parse_scheme
    from nextlab.errors import NextlabError
    from nextlab.io import require_file, sha256_file
    from nextlab.posttrain import stage
    from nextlab.provenance import data_hash_of
    from nextlab.tracking import Job, tracked

    study = load(args)
    require_file(args.init, "checkpoint")
    try:
        scheme = parse_scheme(args.scheme)
    except ValueError as err:
        raise NextlabError(f"--scheme: {err}") from None
    # The invariant-kernel control of a scheme (posttrain.invariant_control) is a run of its own.
    kernels = "invariant" if study.posttrain.batch_invariant else "default"
    name = f"posttrain/{args.model}/{scheme.name}/seed{args.seed}" + ("/invariant" if kernels == "invariant" else "")
    job = Job("posttrain", name, args.out,
              tags={"nextlab.model": args.model, "nextlab.scheme": scheme.name, "nextlab.seed": args.seed,
                    "nextlab.kernels": kernels,
                    "nextlab.scheme_kind": scheme.kind, "nextlab.t": "" if scheme.t is None else scheme.t},
              params={"posttrain": study.posttrain.model_dump(mode="json"), "model": args.model,
                      "scheme": scheme.name, "seed": args.seed},
              data_hash=data_hash_of(args.data), metrics=["metrics.json", ["timing.json", "time"]], curves=["steps.csv", ["timing.csv", "time"]],
              artifacts=["metrics.json", "steps.csv", ["ckpt.pt", "model"]],
              upstream={"checkpoint": sha256_file(args.init)[:16], "tokenizer": sha256_file(args.tokenizer / "tokenizer.json")[:16]})
    with tracked(study, job) as run:
        metrics = stage.run(study, stage.Inputs(init=args.init, data=args.data, tokenizer=args.tokenizer), args.out,
                            model=args.model, scheme=scheme.name, seed=args.seed, on_step=run.log_step)
    log.info("posttrain %s/%s/seed%d: final reward %.3f, abstain rate %.2f, KL %.4f", args.model, scheme.name,
             args.seed, metrics["final_reward"], metrics["final_abstain_rate"], metrics["final_kl"])
    return 0
