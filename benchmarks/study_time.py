"""Wall time of a whole study, and where each job's time goes.

    python benchmarks/study_time.py --study default            # table from logs/default/
    python benchmarks/study_time.py --study smoke --run        # run it first, in a fresh clone, timed

`--run` clones this checkout (what a user's fresh clone holds) into a temporary folder, runs the
study there as `make study` does (registers it, then `dvc repro study@<study>`, which runs the Snakemake DAG; set-up
excluded: the clone uses this checkout's environment) and prints the wall time and DVC's tail, the
time from the last job's end to `dvc repro` returning. The table sums each rule's jobs from
`logs/<study>/benchmarks/*.tsv` (jobs, summed seconds, longest job, peak RSS) and from the
`job timing:` line every job logs (start-up: process start to the stage's work; work; tracking).
Jobs run side by side, so summed seconds exceed the wall time. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Rule names, longest first so that `sft_confidence_small` is not read as `sft`.
RULES = ["sft_confidence", "nondeterminism", "mechanisms", "positions", "agent", "posttrain_invariant", "posttrain", "tokenize", "evaluate", "report", "train", "data", "sft"]


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


TIMING = re.compile(r"job timing: start-up ([\d.]+) s, work ([\d.]+) s, tracking ([\d.]+) s")


def rule_of_log(log: Path, logs: Path) -> str:
    """The rule of a job log, from where the workflow writes it (`logs/<study>/<stage>/...`).

    >>> rule_of_log(Path("logs/d/sft/small_confidence.log"), Path("logs/d"))
    'sft_confidence'
    >>> rule_of_log(Path("logs/d/evaluate/small/summary.log"), Path("logs/d"))
    'evaluate_summary'
    """
    parts = log.relative_to(logs).parts
    rule = parts[0].removesuffix(".log")
    if log.stem.endswith("_confidence"):
        return f"{rule}_confidence"
    return f"{rule}_summary" if log.stem == "summary" else rule


def job_timers(logs: Path) -> dict[str, dict[str, float]]:
    """Per rule, the summed start-up, work and tracking seconds the jobs logged."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"startup": 0.0, "work": 0.0, "tracking": 0.0})
    for log in sorted(logs.rglob("*.log")):
        found = TIMING.findall(log.read_text(errors="replace"))
        if found:
            startup, work, tracking = map(float, found[-1])
            row = out[rule_of_log(log, logs)]
            row["startup"] += startup
            row["work"] += work
            row["tracking"] += tracking
    return out


def print_table(table: list[dict], timers: dict[str, dict[str, float]]) -> None:
    print("| rule | jobs | summed s | longest job s | start-up s | work s | tracking s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    nan = {"startup": float("nan"), "work": float("nan"), "tracking": float("nan")}
    for row in table:
        t = timers.get(row["rule"], nan)
        print(f"| {row['rule']} | {row['jobs']} | {row['seconds']:.1f} | {row['longest']:.1f} | {t['startup']:.1f} | "
              f"{t['work']:.1f} | {t['tracking']:.1f} | {row['max_rss_mb']:.0f} |")
    total = sum(row["seconds"] for row in table)
    sums = {k: sum(t[k] for t in timers.values()) for k in ("startup", "work", "tracking")}
    print(f"| all | {sum(row['jobs'] for row in table)} | {total:.1f} | | {sums['startup']:.1f} | {sums['work']:.1f} | "
          f"{sums['tracking']:.1f} | |")


def run_study(study: str, cores: int) -> Path:
    clone = Path(tempfile.mkdtemp(prefix=f"nextlab-{study}-")) / "project"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(clone / "src"),
               DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", PYTHONHASHSEED="0")
    env.pop("MLFLOW_TRACKING_URI", None)
    # what `make study` does first: make the study one of DVC's stages
    subprocess.run([str(BIN / "python"), "workflow/scripts/register_study.py", study], cwd=clone, env=env, check=True)
    start = time.time()
    proc = subprocess.run(["dvc", "repro", f"study@{study}"], cwd=clone, env=env, capture_output=True, text=True)
    end = time.time()
    if proc.returncode != 0:
        sys.exit(f"the {study} study failed in {clone}:\n{proc.stderr[-3000:]}")
    last_job = max(p.stat().st_mtime for p in (clone / "logs" / study / "benchmarks").glob("*.tsv"))
    print(f"study {study}: {end - start:.1f} s wall with {cores} cores (`dvc repro`, in {clone}); "
          f"{end - last_job:.1f} s from the last job's end to `dvc repro` returning")
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
    print_table(stage_table(benchmarks), job_timers(project / "logs" / args.study))


if __name__ == "__main__":
    main()
