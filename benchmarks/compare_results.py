"""Are two results folders value-identical? Every non-timing value of one study run set against
another's: the check behind "a refactor changes no result" and "fresh runs give the same numbers".

    python benchmarks/compare_results.py results/default /tmp/before/results/default
    python benchmarks/compare_results.py A B --bytes        # also require byte-identical files

Files are compared by what they hold, not their bytes, so a result stays "the same" when only its
record of where it came from moved (the code hash, git commit, run ids, params paths):

- checkpoints (`*.pt`): every tensor bitwise (weights and optimizer state) and every other field;
- tables (`.parquet`, `.csv`): same columns, rows and values (NaN equals NaN);
- arrays (`.npy`) bitwise; JSON and JSON-lines by value; other files (figures, text) by bytes;
- timing files and the provenance / tracking records (`timing.*`, `*invariant_cost*`,
  `provenance.json`, `run.json`) are left out, and so are keys of a JSON file that only record
  provenance or time (`code_hash`, `git_*`, `*_seconds`, `time*`, ...).

Prints one line per file that differs (and the first differing value), then a count. Exit status 1
when anything differs, so a script can use it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

SKIPPED_FILES = re.compile(r"(^|/)(timing\.(json|csv|parquet)|provenance\.json|run\.json)$|invariant_cost")
# Keys that say where or when a value was made, not what it is.
SKIPPED_KEYS = re.compile(r"^(code_hash|git_commit|git_dirty|params_hash|study_params_hash|platform|python|"
                          r"nextlab_version|run_id|parent_run_id|.*_seconds|seconds|time|time_.*|.*_time|"
                          r"wall_s|started|finished|created|tokens_per_s|.*per_second|mfu)$")


def _value_diff(a: Any, b: Any, where: str = "") -> str | None:
    """Where two values first differ (None when equal): JSON values, and checkpoints' nested dicts
    of tensors (bitwise); provenance and time keys left out."""
    if type(a).__name__ == "Tensor" and type(b).__name__ == "Tensor":
        return _tensor_diff(a, b, where)
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if SKIPPED_KEYS.match(str(key)):
                continue
            if key not in a or key not in b:
                return f"{where}/{key}: only in {'second' if key not in a else 'first'}"
            found = _value_diff(a[key], b[key], f"{where}/{key}")
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            found = _value_diff(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return None
    return None if a == b and type(a) is type(b) else f"{where}: {a!r} vs {b!r}"


def _tensor_diff(a: Any, b: Any, where: str) -> str | None:
    import torch

    if a.shape != b.shape or a.dtype != b.dtype:
        return f"{where}: {tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype}"
    bits = (lambda t: t.reshape(-1).view(torch.uint8)) if a.dtype.is_floating_point else (lambda t: t)
    if not torch.equal(bits(a), bits(b)):
        return f"{where}: values differ (max |diff| {(a.double() - b.double()).abs().max().item():.3g})"
    return None


def _frame_diff(a, b) -> str | None:
    if list(a.columns) != list(b.columns):
        return f"columns {list(a.columns)} vs {list(b.columns)}"
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} rows"
    for column in a.columns:
        x, y = a[column], b[column]
        same = (x == y) | (x.isna() & y.isna())
        if not bool(same.all()):
            row = int((~same).to_numpy().nonzero()[0][0])
            return f"column {column!r}, row {row}: {x.iloc[row]!r} vs {y.iloc[row]!r}"
    return None


def file_diff(a: Path, b: Path) -> str | None:
    """How two result files differ in value (None when they hold the same values)."""
    suffix = a.suffix
    if suffix == ".pt":
        import torch

        return _value_diff(torch.load(a, map_location="cpu", weights_only=True),
                           torch.load(b, map_location="cpu", weights_only=True))
    if suffix in (".parquet", ".csv"):
        import pandas as pd

        read = pd.read_parquet if suffix == ".parquet" else pd.read_csv
        frame_a, frame_b = read(a), read(b)
        keep = [c for c in frame_a.columns if not SKIPPED_KEYS.match(str(c))]
        return _frame_diff(frame_a[keep], frame_b[[c for c in frame_b.columns if not SKIPPED_KEYS.match(str(c))]])
    if suffix == ".npy":
        import numpy as np

        x, y = np.load(a), np.load(b)
        return None if x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes() else "arrays differ"
    if suffix == ".json":
        return _value_diff(json.loads(a.read_text()), json.loads(b.read_text()))
    if suffix == ".jsonl":
        lines_a, lines_b = a.read_text().splitlines(), b.read_text().splitlines()
        return _value_diff([json.loads(x) for x in lines_a], [json.loads(x) for x in lines_b])
    return None if a.read_bytes() == b.read_bytes() else "bytes differ"


def compare(first: Path, second: Path, require_bytes: bool = False) -> list[str]:
    """One line per file that is missing on one side or differs in value."""
    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*")
                if p.is_file() and not SKIPPED_FILES.search(str(p.relative_to(root)))}

    names_a, names_b = files(first), files(second)
    problems = [f"{name}: only in {first}" for name in sorted(names_a - names_b)]
    problems += [f"{name}: only in {second}" for name in sorted(names_b - names_a)]
    for name in sorted(names_a & names_b):
        a, b = first / name, second / name
        found = file_diff(a, b)
        if found is None and require_bytes and a.read_bytes() != b.read_bytes():
            found = "same values, other bytes"
        if found:
            problems.append(f"{name}: {found}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--bytes", action="store_true", help="also require byte-identical files")
    args = parser.parse_args()
    for folder in (args.first, args.second):
        if not folder.is_dir():
            sys.exit(f"compare_results: {folder}: not a folder")
    problems = compare(args.first, args.second, args.bytes)
    for line in problems:
        print(line)
    compared = sum(1 for p in args.first.rglob("*") if p.is_file() and not SKIPPED_FILES.search(str(p)))
    print(f"{len(problems)} of {compared} files differ" if problems else f"all {compared} files value-identical")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
