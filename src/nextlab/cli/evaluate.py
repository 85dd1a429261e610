"""`nextlab evaluate`: answer the held-out questions with one model, or summarise many.

Two modes:
  nextlab evaluate --model M --scheme S --seed K --ckpt ckpt.pt --data D --tokenizer T --out DIR
      one model: answers.parquet and metrics.json (intervals over questions);
  nextlab evaluate --summary --answers a.parquet b.parquet ... --data D --out DIR
      every scheme and seed of a model: metrics.json (`<model>/<scheme>/<key>`, intervals over
      questions and seeds), summary.parquet, answers.parquet (all rows) and the figures.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nextlab.cli.common import add_common, load

log = logging.getLogger("nextlab.evaluate")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate calibration and hallucination (one model, or --summary over schemes and seeds)",
        description=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument("--model", help="model name (a key of params models:)")
    parser.add_argument("--scheme", help="reward scheme the checkpoint was post-trained under (none = SFT)")
    parser.add_argument("--seed", type=int, help="post-training seed (0 for none)")
    parser.add_argument("--ckpt", type=Path, help="the checkpoint to evaluate")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer folder (results/<study>/tokenizer)")
    parser.add_argument("--data", type=Path, required=True, help="data folder (results/<study>/data)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--summary", action="store_true", help="summarise answers tables instead")
    parser.add_argument("--answers", type=Path, nargs="+", help="with --summary: the answers.parquet files")
    return parser


def _require(args: argparse.Namespace, names: list[str], mode: str) -> None:
    from nextlab.errors import NextlabError

    missing = [f"--{n}" for n in names if getattr(args, n) is None]
    if missing:
        raise NextlabError(f"{mode} needs {', '.join(missing)}")


def run(args: argparse.Namespace) -> int:
    study = load(args, uses_torch=not args.summary)
    if args.summary:
        _require(args, ["answers"], "evaluate --summary")
        return _summary(study, args)
    _require(args, ["model", "scheme", "seed", "ckpt", "tokenizer"], "evaluate")
    return _one(study, args)


def _one(study, args: argparse.Namespace) -> int:
    from nextlab.config.posttrain import parse_scheme
    from nextlab.errors import NextlabError
    from nextlab.evaluate import stage
    from nextlab.io import require_file, sha256_file
    from nextlab.provenance import data_hash_of
    from nextlab.tracking import Job, tracked

    try:
        scheme = parse_scheme(args.scheme)
    except ValueError as err:
        raise NextlabError(f"--scheme: {err}") from None
    job = Job("evaluate", f"evaluate/{args.model}/{scheme.name}/seed{args.seed}", args.out,
              tags={"nextlab.model": args.model, "nextlab.scheme": scheme.name, "nextlab.seed": args.seed,
                    "nextlab.scheme_kind": scheme.kind, "nextlab.t": "" if scheme.t is None else scheme.t},
              params={"evaluate": study.evaluate.model_dump(mode="json"), "model": args.model,
                      "scheme": scheme.name, "seed": args.seed},
              data_hash=data_hash_of(args.data), metrics=["metrics.json", ["timing.json", "time"]],
              artifacts=["metrics.json", "answers.parquet", "reliability.png"],
              tables=[["answers.parquet", "answers.json"]],
              upstream={"checkpoint": sha256_file(require_file(args.ckpt, "checkpoint"))[:16]})
    with tracked(study, job):
        stage.run(study, stage.Inputs(ckpt=args.ckpt, data=args.data, tokenizer=args.tokenizer), args.out,
                  model=args.model, scheme=scheme.name, seed=args.seed)
    return 0


def _summary(study, args: argparse.Namespace) -> int:
    import pandas as pd

    from nextlab.evaluate import summary
    from nextlab.io import read_json
    from nextlab.tracking import Job, tracked

    # The run is named after the models in the answers, known once the stage has read them.
    job = Job("evaluate", "evaluate/summary", args.out, tags={"nextlab.scheme": "all"},
              params={"evaluate": study.evaluate.model_dump(mode="json")},
              metrics=["metrics.json", ["timing.json", "time"]], artifacts=["metrics.json", "summary.parquet"])
    with tracked(study, job):
        flat = summary.run(study, summary.Inputs(answers=args.answers, data=args.data), args.out)
        answered = pd.read_parquet(args.out / "answers.parquet", columns=["model"])["model"]
        models = sorted(answered.unique())
        job.name = f"evaluate/{'+'.join(models)}/summary"
        job.tags = {"nextlab.model": "+".join(models), **job.tags}
        job.data_hash = read_json(args.data / "stats.json").get("data_hash")
        job.artifacts += [[f"figures/{name}.png", "figures"] for name in summary.FIGURES]
    log.info("evaluate summary of %d answers (%s): %s", len(answered), ", ".join(models),
             ", ".join(f"{k}={v:.3f}" for k, v in flat.items()
                       if k.endswith(("/hallucination", "/abstention")) and v is not None))
    return 0
