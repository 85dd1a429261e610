"""One nondeterminism job of a study, outside the workflow, with params overridden on the command
line; prints the figures issue 12 asks for (changed completions per batch size with exact
intervals and power, predicted vs observed flips, distinct completions per repeated prompt, the
first-divergence histogram) and the job's seconds.

    python benchmarks/nondeterminism_job.py --dtype bfloat16 --attention sdpa --threads 1
    python benchmarks/nondeterminism_job.py --dtype bfloat16 --set repeat_requests=1000 --set invariant_control=false
    python benchmarks/nondeterminism_job.py --dtype float32 --set "batch_sizes=[1, 2, 64]" --out /tmp/nd

It reads the study's trained checkpoint (run the study, or its `sft` rule, first) and writes the
job's tables under `--out` (default: a temporary folder), never into results/.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nextlab.config import load_study  # noqa: E402
from nextlab.config.nondeterminism import NondeterminismParams  # noqa: E402
from nextlab.nondeterminism.power import lower_bound, upper_bound  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--model", default=None, help="default: the study's first model")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--attention", default="sdpa")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a nondeterminism param (YAML value)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from nextlab.nondeterminism import stage

    study = load_study(args.params)
    values = study.nondeterminism.model_dump()
    for item in args.set:
        key, _, value = item.partition("=")
        values[key] = yaml.safe_load(value)
    if args.set and "repeat_job" not in {s.partition("=")[0] for s in args.set}:
        values["repeat_job"] = None  # the job run here sends the requests
    study = study.model_copy(update={"nondeterminism": NondeterminismParams.model_validate(values)})
    model = args.model or next(iter(study.models))
    results = ROOT / "results" / study.study
    ckpt = results / "models" / model / study.nondeterminism.checkpoint / "ckpt.pt"
    out = args.out or Path(tempfile.mkdtemp(prefix="nd-job-"))
    start = time.perf_counter()
    stage.run(study, stage.Inputs(ckpt=ckpt, data=results / "data", tokenizer=results / "tokenizer"), out,
              model=model, dtype=args.dtype, attention=args.attention, threads=args.threads)
    seconds = time.perf_counter() - start
    report(out, seconds)


def report(out: Path, seconds: float) -> None:
    import pandas as pd

    metrics = json.loads((out / "metrics.json").read_text())
    env = json.loads((out / "env.json").read_text())
    comp = pd.read_parquet(out / "completions.parquet")
    print(f"\n{env['cpu_model']} ({env['cpu_capability']}; bf16 path {env.get('bf16_kernels')}), "
          f"{env['dtype']}, {env['threads']} thread(s); job {seconds:.1f} s -> {out}")
    first = comp[(comp["run"] == "first") & (comp["batch_size"] > 1)]
    print("changed completions per batch size (exact 95% interval, power for a 1% rate):")
    for (path, b), rows in first.groupby(["path", "batch_size"]):
        n, k = len(rows), int(rows["differs"].sum())
        print(f"  {path:9} b={b:<3} {k:4d}/{n:<4d} = {k / n:.3f} [{lower_bound(k, n, 0.975):.3f}, "
              f"{upper_bound(k, n, 0.975):.3f}]  power {1 - 0.99 ** n:.2f}")
    for m in ("prefill", "decode"):
        if f"{m}_flip_rate" in metrics:
            print(f"{m}: observed flip rate {metrics[f'{m}_flip_rate']} (95% upper {metrics[f'{m}_flip_rate_upper']}), "
                  f"predicted {metrics[f'{m}_predicted_flip_rate']}, possible {metrics[f'{m}_possible_flip_rate']}; "
                  f"runs with a flip {metrics[f'{m}_prompts_with_flip']}, predicted {metrics[f'{m}_predicted_changed_rate']}")
    unique = pd.read_parquet(out / "unique.parquet")
    if len(unique):
        print("repeated requests: distinct completions per prompt")
        print(unique.to_string(index=False))
        reps = comp[(comp["run"] == "repeat_requests") & comp["differs"]]
        for path, rows in reps.groupby("path"):
            print(f"  {path}: first divergence (token position: completions): "
                  + str(rows["first_divergence"].value_counts().sort_index().to_dict()))


if __name__ == "__main__":
    main()
