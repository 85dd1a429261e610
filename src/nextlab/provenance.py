"""What every result records about where it came from: code version, params hash, data hash."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

from nextlab import __version__
from nextlab.io import read_json, sha256_json


@functools.cache
def git_commit() -> str:
    """The commit of the project being run (the working directory's repository, else the one
    holding this package), with `-dirty` when tracked files have changed; `unknown` outside git."""
    for where in (Path.cwd(), Path(__file__).resolve().parent):
        commit = _git_commit(where)
        if commit != "unknown":
            return commit
    return "unknown"


def _git_commit(here: Path) -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def params_hash(params: Any) -> str:
    """A short hash of (a section of) the params, as plain data."""
    if hasattr(params, "model_dump"):
        params = params.model_dump(mode="json")
    return sha256_json(params)[:16]


def provenance(params: Any, seed: int | None = None, data_hash: str | None = None) -> dict[str, Any]:
    """The block stored beside every result."""
    return {
        "nextlab_version": __version__,
        "git_commit": git_commit(),
        "params_hash": params_hash(params),
        "seed": seed,
        "data_hash": data_hash,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def data_hash_of(data_dir: str | Path, required: bool = True) -> str | None:
    """The data stage's hash (from its `stats.json`), which every later run carries as a tag.

    A missing or unreadable file is an error naming it, unless `required` is false (then None).
    """
    stats = Path(data_dir) / "stats.json"
    if not required and not stats.is_file():
        return None
    return read_json(stats).get("data_hash")
