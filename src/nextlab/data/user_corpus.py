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


def corpus_files(path: str | Path) -> list[Path]:
    """The files of a user corpus (a file, or a folder's `.txt` and `.jsonl` files, sorted by
    name); an error naming the path when there is none. The workflow makes them the data stage's
    inputs, so editing, adding or removing one reruns it."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"data.user_corpus.path: {path} does not exist")
    if path.is_file():
        if path.suffix not in (".txt", ".jsonl"):
            raise InputFileError(f"data.user_corpus.path: {path}: expected a .txt or .jsonl file")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".txt", ".jsonl"))
    if not files:
        raise InputFileError(f"data.user_corpus.path: {path} holds no .txt or .jsonl files")
    return files


def read_user_corpus(path: str | Path) -> list[dict[str, Any]]:
    """Documents of the user corpus, in a stable (sorted file name) order."""
    texts: list[str] = []
    for file in corpus_files(path):
        if file.suffix == ".jsonl":
            texts.extend(_jsonl_documents(file))
        else:
            text = _read_utf8(file)
            if text.strip():
                texts.append(text)
    if not texts:
        raise InputFileError(f"data.user_corpus.path: {path} is empty (no non-blank document)")
    return [{"text": t, "kind": "user", "person": None} for t in texts]


def check_user_corpus(corpus: Any) -> None:
    """Read a study's user corpus (`data.user_corpus`, or None) as the data stage will, so a bad
    file stops the study before any job runs."""
    if corpus is not None:
        read_user_corpus(corpus.path)
