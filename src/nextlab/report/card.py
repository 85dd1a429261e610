"""The report card: where and how a study ran, read from its files (no torch import, no model).

* `environment`: the torch and BLAS the jobs ran with, the CPU model and its vector flags (or
  the GPU), threads, the git commit with its dirty flag, the study's params hash;
* `stage_times`: per rule, the jobs' summed and longest seconds and peak memory from Snakemake's
  benchmark files (`logs/<study>/benchmarks/*.tsv`), in data-flow order.

    >>> rule_of("posttrain_small_penalized-0.75_seed2.tsv"), rule_of("evaluate_small_summary.tsv")
    ('posttrain', 'evaluate_summary')
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import platform
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from nextlab import layout

# Data-flow order; longest names first when matching, so `sft_confidence_x` is not read as `sft`.
RULE_ORDER = ["data", "tokenize", "train", "sft", "sft_confidence", "posttrain", "evaluate", "evaluate_summary",
              "nondeterminism", "nondeterminism_summary", "report"]
VECTOR_FLAGS = re.compile(r"^(avx\w*|amx\w*|fma|sse4_2|neon|sve\w*)$")


def rule_of(benchmark: str) -> str:
    """The rule a benchmark file (`<rule>_<wildcards>.tsv`) belongs to."""
    stem = Path(benchmark).stem
    known = sorted({r.removesuffix("_summary") for r in RULE_ORDER}, key=len, reverse=True)
    rule = next((r for r in known if stem == r or stem.startswith(r + "_")), stem.split("_")[0])
    return f"{rule}_summary" if stem.endswith("_summary") else rule


def stage_times(benchmarks: Path) -> list[dict[str, Any]]:
    """Per rule: jobs, summed seconds, longest job and peak RSS (MB), the latest run of each job."""
    jobs: dict[str, list[dict[str, str]]] = defaultdict(list)
    for path in sorted(Path(benchmarks).glob("*.tsv")):
        with path.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if rows:
            jobs[rule_of(path.name)].append(rows[-1])
    table = []
    for rule, rows in jobs.items():
        seconds = [float(r["s"]) for r in rows]
        rss = [float(r["max_rss"]) for r in rows if r.get("max_rss") not in (None, "", "-", "NA")]
        table.append({"rule": rule, "jobs": len(rows), "seconds": sum(seconds), "longest": max(seconds),
                      "max_rss_mb": max(rss) if rss else float("nan")})
    order = {r: i for i, r in enumerate(RULE_ORDER)}
    return sorted(table, key=lambda row: (order.get(row["rule"], len(order)), row["rule"]))


def _cpu() -> tuple[str, str]:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith(("flags", "Features"))),
                 [])
    return model, " ".join(sorted({f for f in flags if VECTOR_FLAGS.match(f)}))


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def environment(study: Any, results: Path) -> list[tuple[str, str]]:
    """(what, value) rows for the report's first table."""
    from nextlab.provenance import git_state, params_hash

    results = Path(results)
    models = sorted(p.name for p in (results / layout.MODELS).iterdir()) if (results / layout.MODELS).is_dir() else []
    train = _json(results / layout.PRETRAIN_PROVENANCE.format(model=models[0])) if models else {}
    threads = _json(results / layout.PRETRAIN_METRICS.format(model=models[0])).get("threads") if models else None
    any_job = layout.NONDETERMINISM.format(model="*", ndjob=layout.nd_job("*", "*", "*"))
    nd_env = next((_json(p) for p in sorted(results.glob(f"{any_job}/env.json"))), {})
    commit, dirty = git_state()
    cpu, flags = _cpu()
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "not installed"
    rows = [
        ("study", f"`{study.study}`, params hash `{params_hash(study)}`"),
        ("code", f"git `{commit}`" + (" (uncommitted changes)" if dirty else "" if dirty is False else "")),
        ("torch", torch_version + (f", BLAS {nd_env['blas']}" if nd_env.get("blas") else "")),
        ("device", nd_env.get("gpu") or train.get("device", "?")),
        ("CPU", f"{cpu}" + (f" ({flags})" if flags else "")),
        ("threads", f"{threads} in pretraining" if threads else "?"),
        ("python", platform.python_version()),
    ]
    if nd_env.get("bf16_kernel_path"):
        rows.append(("bf16 kernels", str(nd_env["bf16_kernel_path"])))
    return rows
