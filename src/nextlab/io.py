"""Small file helpers shared by every stage: atomic writes and content hashes.

Results are written to a temporary file in the same folder and renamed into place, so an
interrupted stage never leaves a half-written file where a finished one is expected.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nextlab.errors import InputFileError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give the result the mode a plain open() would
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars reach JSON from metrics code; convert them rather than fail.
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_safe(metrics: dict) -> dict:
    """NaN and infinities become None (JSON null): metrics files stay strict JSON.

    >>> json_safe({"a": float("nan"), "b": 1.0})
    {'a': None, 'b': 1.0}
    """
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    require_file(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputFileError(f"{path}: not valid JSON ({err})") from None


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Return `path` if it is a non-empty file, else raise an error that names it."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: {what} not found")
    if not path.is_file():
        raise InputFileError(f"{path}: {what} is not a regular file")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: {what} is empty")
    return path


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def sha256_files(paths: list[str | os.PathLike]) -> str:
    """One hash over several files, order-sensitive, names excluded (content only)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=_json_default).encode()).hexdigest()
