"""Wall time of a whole study, and per-stage times from Snakemake's benchmark files.

    python benchmarks/study_time.py --study default            # table from logs/default/benchmarks/
    python benchmarks/study_time.py --study smoke --run        # run it first, in a fresh clone, timed

`--run` clones this checkout (what a user's fresh clone holds) into a temporary folder, runs the
study there with `snakemake --profile workflow/profiles/default` (set-up excluded: the clone uses
this checkout's environment) and prints the wall time. The table sums each rule's jobs from
`logs/<study>/benchmarks/*.tsv`: jobs, summed seconds, longest job and peak RSS. Jobs run side by
side, so summed seconds exceed the wall time. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Rule names, longest first so that `sft_confidence_small` is not read as `sft`.
RULES = ["sft_confidence", "nondeterminism", "posttrain", "tokenize", "evaluate", "report", "train", "data", "sft"]


def rule_of(benchmark: Path) -> str:
    """The rule a benchmark file belongs to, from its name.

    >>> rule_of(Path("posttrain_small_penalized-0.75_seed2.tsv"))
    'posttrain'
    >>> rule_of(Path("evaluate_small_summary.tsv"))
    'evaluate_summary'
    >>> rule_of(Path("sft_confidence_small.tsv"))
    'sft_confidence'
    """
    stem = benchmark.stem
    rule = next((r for r in RULES if stem == r or stem.startswith(r + "_")), stem)
    return f"{rule}_summary" if stem.endswith("_summary") else rule


def stage_table(benchmarks: Path) -> list[dict]:
    jobs: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(benchmarks.glob("*.tsv")):
        with path.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if rows:
            jobs[rule_of(path)].append(rows[-1])  # the latest run of that job
    table = []
    for rule, rows in jobs.items():
        seconds = [float(r["s"]) for r in rows]
        rss = [float(r["max_rss"]) for r in rows if r["max_rss"] not in ("", "-")]
        table.append({"rule": rule, "jobs": len(rows), "seconds": sum(seconds), "longest": max(seconds),
                      "max_rss_mb": max(rss) if rss else float("nan")})
    order = {r: i for i, r in enumerate(["data", "tokenize", "train", "sft", "sft_confidence", "posttrain",
                                         "evaluate", "evaluate_summary", "nondeterminism",
                                         "nondeterminism_summary", "report"])}
    return sorted(table, key=lambda row: order.get(row["rule"], len(order)))


def print_table(table: list[dict]) -> None:
    print("| rule | jobs | summed s | longest job s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    for row in table:
        print(f"| {row['rule']} | {row['jobs']} | {row['seconds']:.1f} | {row['longest']:.1f} | {row['max_rss_mb']:.0f} |")
    total = sum(row["seconds"] for row in table)
    print(f"| all | {sum(row['jobs'] for row in table)} | {total:.1f} | | |")


def run_study(study: str, cores: int) -> Path:
    clone = Path(tempfile.mkdtemp(prefix=f"nextlab-{study}-")) / "project"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(clone / "src"),
               DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", PYTHONHASHSEED="0")
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    proc = subprocess.run(["snakemake", "--profile", "workflow/profiles/default", "--cores", str(cores),
                           "--config", f"params=params/{study}.yaml"], cwd=clone, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"the {study} study failed in {clone}:\n{proc.stderr[-3000:]}")
    print(f"study {study}: {wall:.1f} s wall with {cores} cores, in {clone}")
    return clone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="default")
    parser.add_argument("--run", action="store_true", help="run the study first in a fresh clone, timed")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--project", type=Path, default=ROOT, help="where logs/<study>/benchmarks/ is")
    args = parser.parse_args()
    project = run_study(args.study, args.cores) if args.run else args.project
    benchmarks = project / "logs" / args.study / "benchmarks"
    if not benchmarks.is_dir():
        sys.exit(f"{benchmarks}: no benchmark files; run the study first (or pass --run)")
    print_table(stage_table(benchmarks))


if __name__ == "__main__":
    main()
