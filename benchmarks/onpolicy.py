"""One post-training scheme run twice, with the default kernels and with `posttrain.batch_invariant`:
per step the sampler-trainer KL and max |delta log-prob|, the seconds per step, the reward curve
and the final metrics side by side (does the sampler-trainer mismatch matter at this scale?).

    python benchmarks/onpolicy.py                                  # binary, seed 1, the default study
    python benchmarks/onpolicy.py --scheme penalized-0.5 --steps 10 --threads 1

It reads the study's SFT checkpoint (run the study, or its `sft` rule, first) and writes both
runs under a temporary folder, never into results/. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nextlab.config import load_study  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--scheme", default="binary")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None, help="default: the study's posttrain.steps")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from nextlab.config.posttrain import parse_scheme
    from nextlab.posttrain.stage import start_stage_of

    torch.set_num_threads(args.threads)
    base = load_study(args.params)
    model = next(iter(base.models))
    results = ROOT / "results" / base.study
    start = results / "models" / model / start_stage_of(parse_scheme(args.scheme)) / "ckpt.pt"
    out = Path(tempfile.mkdtemp(prefix="onpolicy-"))
    show(*run_both(base, model, args, start, results, out))


def run_both(base, model, args, start, results, out):
    import pandas as pd

    from nextlab.posttrain import stage

    runs, finals = {}, {}
    for invariant in (False, True):
        update = {"batch_invariant": invariant} | ({"steps": args.steps} if args.steps else {})
        study = base.model_copy(update={"posttrain": base.posttrain.model_copy(update=update)})
        name = "invariant" if invariant else "default"
        inputs = stage.Inputs(init=start, data=results / "data", tokenizer=results / "tokenizer")
        finals[name] = stage.run(study, inputs, out / name, model=model, scheme=args.scheme, seed=args.seed)
        runs[name] = pd.read_csv(out / name / "steps.csv").merge(pd.read_csv(out / name / "timing.csv"), on="step")
    return runs, finals, args, out


def show(runs, finals, args, out) -> None:
    cols = ["step", "reward", "sampler_trainer_kl", "logprob_diff_max", "logprob_diff_mean", "seconds"]
    print(f"{args.scheme}, seed {args.seed}, {args.threads} thread(s); runs under {out}")
    for name, steps in runs.items():
        print(f"\n{name} kernels (per step):")
        print(steps[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print(f"  sampler-trainer KL: mean {steps['sampler_trainer_kl'].mean():.3g}, max "
              f"{steps['sampler_trainer_kl'].max():.3g}; max |delta log-prob| {steps['logprob_diff_max'].max():.3g}; "
              f"{steps['seconds'].mean():.3f} s/step")
    ratio = runs["invariant"]["seconds"].mean() / runs["default"]["seconds"].mean()
    print(f"\ninvariant step cost: {ratio:.2f}x the default")
    keys = sorted(k for k in finals["default"] if isinstance(finals["default"][k], (int, float)))
    print("\nfinal metrics     default   invariant")
    for k in keys:
        print(f"  {k:40} {finals['default'][k]:>9.4g} {finals['invariant'].get(k, float('nan')):>9.4g}")


if __name__ == "__main__":
    main()
