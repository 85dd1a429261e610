"""Reading the results tables a figure needs, with errors that say what to run.

The report reads only `results/<study>/` (never a model). Every read names the columns it
needs; a missing file or column raises `MissingInput`, whose message names the file, what is
missing and the command that writes it, e.g.::

    results/smoke/models/tiny/pretrain/facts.csv: lacks column(s) ['qa_acc'] (has: mentions, bio_acc);
    it is written by `nextlab train`; rebuild it with:
      snakemake --cores 2 --config params=params/smoke.yaml results/smoke/models/tiny/pretrain/facts.csv

Tables are read once and cached: several figures share a table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from nextlab import layout
from nextlab.errors import NextlabError

# The first path component under results/<study>/ -> the subcommand that writes it.
WRITERS = {
    layout.DATA: "nextlab data",
    layout.TOKENIZER: "nextlab tokenize",
    layout.MODELS: "nextlab train / sft / posttrain",
    layout.top(layout.EVALUATE): "nextlab evaluate",
    layout.top(layout.NONDETERMINISM): "nextlab nondeterminism",
}


class MissingInput(NextlabError):
    """A results file or column a figure needs is absent; the message says how to produce it."""

    def __init__(self, path: Path, problem: str, hint: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}; {hint}")


class Tables:
    """The results tables of one study, read on demand.

    `results`: the study's folder (`results/<study>`); `params`: the params file that produced it,
    only used to spell out the command that rebuilds a missing file; `study`: its validated params.
    """

    def __init__(self, results: str | Path, params: str | Path | None = None, study: Any = None):
        self.results = Path(results)
        self.params = Path(params) if params is not None else None
        self.study = study  # the validated params, for figures that need a setting (bins, targets)
        self._cache: dict[tuple[str, str], Any] = {}

    def path(self, relative: str) -> Path:
        return self.results / relative

    def hint(self, relative: str) -> str:
        """Which stage writes `relative` and the command that rebuilds it."""
        writer = WRITERS.get(layout.top(relative), "the pipeline")
        params = self.params or Path("params") / f"{self.results.name}.yaml"
        return (f"it is written by `{writer}`; rebuild it with:\n"
                f"  snakemake --cores 2 --config params={params} {self.path(relative)}")

    def exists(self, relative: str) -> bool:
        path = self.path(relative)
        return path.is_file() and path.stat().st_size > 0

    def require(self, relative: str) -> Path:
        path = self.path(relative)
        if not path.exists():
            raise MissingInput(path, "not found", self.hint(relative))
        if not path.is_file() or path.stat().st_size == 0:
            raise MissingInput(path, "empty or not a file", self.hint(relative))
        return path

    def _frame(self, relative: str, kind: str) -> pd.DataFrame:
        key = (kind, relative)
        if key not in self._cache:
            path = self.require(relative)
            try:
                frame = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
            except Exception as err:  # a corrupt table is the user's to fix: say which
                raise MissingInput(path, f"not a readable {kind} table ({err})", self.hint(relative)) from None
            self._cache[key] = frame
        return self._cache[key]

    def _check_columns(self, relative: str, frame: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            has = ", ".join(map(str, frame.columns))
            raise MissingInput(self.path(relative), f"lacks column(s) {missing} (has: {has})", self.hint(relative))

    def csv(self, relative: str, columns: tuple[str, ...] | list[str]) -> pd.DataFrame:
        """The CSV table at `relative`, checked to have `columns` (a copy: callers may edit it)."""
        frame = self._frame(relative, "csv")
        self._check_columns(relative, frame, columns)
        return frame.copy()

    def parquet(self, relative: str, columns: tuple[str, ...] | list[str]) -> pd.DataFrame:
        frame = self._frame(relative, "parquet")
        self._check_columns(relative, frame, columns)
        return frame.copy()

    def json(self, relative: str, keys: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
        key = ("json", relative)
        if key not in self._cache:
            path = self.require(relative)
            try:
                self._cache[key] = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise MissingInput(path, f"not valid JSON ({err})", self.hint(relative)) from None
        data = self._cache[key]
        missing = [k for k in keys if k not in data]
        if missing:
            raise MissingInput(self.path(relative), f"lacks key(s) {missing}", self.hint(relative))
        return dict(data)

    def read(self, relative: str, columns: tuple[str, ...] | list[str]) -> Any:
        """Dispatch on the file's suffix: .csv, .parquet or .json."""
        suffix = Path(relative).suffix
        if suffix == ".csv":
            return self.csv(relative, columns)
        if suffix == ".parquet":
            return self.parquet(relative, columns)
        if suffix == ".json":
            return self.json(relative, columns)
        raise ValueError(f"{relative}: no reader for {suffix!r}")
