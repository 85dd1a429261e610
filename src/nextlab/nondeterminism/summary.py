"""The nondeterminism summary: every job of a model, read back from its tables (no torch).

How `nextlab nondeterminism --summary` calls it, after the study's jobs have written their tables::

    jobs = [Path("results/default/nondeterminism/small/float32/sdpa/threads1")]
    flat = run(study, Inputs(jobs=jobs), "results/default/nondeterminism/small/summary")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nextlab.config import Study
from nextlab.config.nondeterminism import TABLES
from nextlab.errors import NextlabError
from nextlab.io import read_json, require_file, write_json


def read_jobs(job_dirs: list[str | Path]) -> dict[str, pd.DataFrame]:
    """Concatenate the tables of several job folders; a missing table is an error naming it."""
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES}
    for folder in job_dirs:
        for name in TABLES:
            path = require_file(Path(folder) / f"{name}.parquet", f"nondeterminism {name} table")
            try:
                frames[name].append(pd.read_parquet(path))
            except Exception as err:
                raise NextlabError(f"{path}: not a readable parquet file ({err})") from None
    return {name: pd.concat(parts, ignore_index=True) for name, parts in frames.items()}


@dataclass(frozen=True)
class Inputs:
    jobs: list[Path]  # the job folders of one model (their tables, env.json, metrics.json)


def run(study: Study, inputs: Inputs, out: str | Path) -> dict[str, Any]:
    """Figures over every job of a model (`figures/*.png`), and a flat metrics.json keyed
    `<dtype>.<attention>.threads<k>.<key>`; returns the metrics."""
    from nextlab.nondeterminism.figures import draw_all

    job_dirs = inputs.jobs
    tables = read_jobs(job_dirs)
    flat: dict[str, Any] = {}
    for folder in job_dirs:
        env = read_json(Path(folder) / "env.json")
        metrics = read_json(Path(folder) / "metrics.json")
        prefix = f"{env['dtype']}.{env['attention']}.threads{env['threads']}"
        flat.update({f"{prefix}.{k}": v for k, v in metrics.items()})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    draw_all(tables, out / "figures")
    write_json(out / "metrics.json", flat)
    return flat
