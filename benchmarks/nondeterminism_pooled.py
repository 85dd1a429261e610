"""The nondeterminism figures of a finished study, pooled over its jobs: changed completions per
dtype and batch size with exact 95% intervals and power, per job, predicted vs observed flips,
the verdict the report gives, distinct completions per repeated prompt and where completions
first diverge. Reads results/<study>/nondeterminism/<model>/ only (no torch).

    python benchmarks/nondeterminism_pooled.py                 # the default study
    python benchmarks/nondeterminism_pooled.py --study smoke --model tiny
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nextlab.nondeterminism.power import detection_power, lower_bound, predicted_flips, upper_bound  # noqa: E402
from nextlab.nondeterminism.summary import read_jobs  # noqa: E402
from nextlab.report.figures.nondeterminism import power_note, verdict  # noqa: E402


def ci(k: int, n: int) -> str:
    return f"{k:4d}/{n:<4d} {k / n:6.3f} [{lower_bound(k, n, 0.975):.3f}, {upper_bound(k, n, 0.975):.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="default")
    parser.add_argument("--model", default="small")
    args = parser.parse_args()
    dirs = sorted((ROOT / "results" / args.study / "nondeterminism" / args.model).glob("*/*/threads*"))
    t = read_jobs(dirs)
    c = t["completions"]
    first = c[(c["run"] == "first") & (c["batch_size"] > 1)]
    print("changed completions (exact two-sided 95% interval; power for a 1% rate)")
    for (dtype, path, b), g in first.groupby(["dtype", "path", "batch_size"]):
        n = len(g)
        print(f"  {dtype:9} {path:9} b={b:<3} {ci(int(g['differs'].sum()), n)}  power {detection_power(0.01, n):.2f}")
    for b, g in first[first["path"] == "default"].groupby("batch_size"):
        n = len(g)
        print(f"  all dtypes default   b={b:<3} {ci(int(g['differs'].sum()), n)}  power {detection_power(0.01, n):.2f}")
    print("per job, default kernels, every batch size > 1")
    for (dtype, attention, threads), g in first[first["path"] == "default"].groupby(["dtype", "attention", "threads"]):
        print(f"  {dtype}/{attention}/threads{threads}: {ci(int(g['differs'].sum()), len(g))}")
    print("teacher-forced steps: drift-predicted vs observed flips")
    for (dtype, measure), g in t["steps"].groupby(["dtype", "measure"]):
        p = predicted_flips(g["margin"].to_numpy(), g["max_abs_diff"].to_numpy())
        f = int(g["flip"].sum())
        print(f"  {dtype:9} {measure:7} steps {p.steps}, not bitwise equal {g['not_equal'].mean():.3f}, max drift "
              f"{g['max_abs_diff'].max():.3g}; predicted {p.predicted_rate:.5f}, possible {p.possible_rate:.5f}, "
              f"observed {f / p.steps:.5f} (95% upper {upper_bound(f, p.steps):.5f})")
    said, _ = verdict(c, t["steps"])
    print(f"verdict: {said}\n{power_note(first)}")
    print(t["unique"][["dtype", "attention", "threads", "path", "prompt_id", "requests", "unique",
                       "differ_from_alone"]].to_string(index=False))
    diverged = c[c["differs"] & (c["path"] == "default") & (c["batch_size"] > 1)]
    for run, g in diverged.groupby("run"):
        edges = list(range(0, int(g["first_divergence"].max()) + 9, 8))
        counts, _ = np.histogram(g["first_divergence"], bins=edges)
        print(f"first divergence, {run} (token positions, bins of 8): "
              + ", ".join(f"{lo}-{lo + 7}: {n}" for lo, n in zip(edges, counts) if n))
    env = json.loads((dirs[0] / "env.json").read_text())
    print({k: env.get(k) for k in ("cpu_model", "cpu_flags", "cpu_capability", "bf16_kernels", "torch")})


if __name__ == "__main__":
    main()
