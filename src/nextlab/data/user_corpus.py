"""A user's own text: a folder of `.txt` files (one document each), or `.jsonl` files whose
lines are objects with a `text` field (one document per line), or a single such file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nextlab.errors import InputFileError


def _read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputFileError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None


def _jsonl_documents(path: Path) -> list[str]:
    docs = []
    for number, line in enumerate(_read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputFileError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise InputFileError(f"{path}:{number}: expected an object with a string field 'text'")
        if obj["text"].strip():
            docs.append(obj["text"])
    return docs


def read_user_corpus(path: str | Path) -> list[dict[str, Any]]:
    """Documents of the user corpus, in a stable (sorted file name) order."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"data.user_corpus.path: {path} does not exist")
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".txt", ".jsonl"))
        if not files:
            raise InputFileError(f"data.user_corpus.path: {path} holds no .txt or .jsonl files")
    texts: list[str] = []
    for file in files:
        if file.suffix == ".jsonl":
            texts.extend(_jsonl_documents(file))
        elif file.suffix == ".txt":
            text = _read_utf8(file)
            if text.strip():
                texts.append(text)
        else:
            raise InputFileError(f"{file}: expected a .txt or .jsonl file")
    if not texts:
        raise InputFileError(f"data.user_corpus.path: {path} is empty (no non-blank document)")
    return [{"text": t, "kind": "user", "person": None} for t in texts]
