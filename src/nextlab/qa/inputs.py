"""Reading and checking what the post-training and evaluation stages start from.

Every check runs before any model work, and names the file and what is wrong: a missing or
unreadable checkpoint, one made with another tokenizer or model shape than the params say, one from
the wrong stage, a QA table without the split a stage needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from nextlab.config import Study
from nextlab.errors import InputFileError, NextlabError
from nextlab.io import require_file, sha256_file
from nextlab.model import GPTConfig
from nextlab.model.checkpoint import check_compatible, read_checkpoint
from nextlab.tokenizer import load_tokenizer

QA_COLUMNS = ("question_id", "person_id", "attribute", "question", "answer", "mentions", "split", "seen")


def read_qa(path: str | Path) -> pd.DataFrame:
    path = require_file(path, "QA table")
    try:
        qa = pd.read_parquet(path)
    except Exception as err:
        raise InputFileError(f"{path}: not a readable parquet file ({err})") from None
    missing = [c for c in QA_COLUMNS if c not in qa.columns]
    if missing:
        raise InputFileError(f"{path}: lacks column(s) {missing}; expected the data stage's qa.parquet")
    return qa


def require_split(qa: pd.DataFrame, split: str, path: str | Path) -> pd.DataFrame:
    rows = qa[qa["split"] == split]
    if rows.empty:
        raise InputFileError(f"{path}: no questions in split {split!r}")
    return rows


def tokenizer_and_hash(tokenizer_dir: str | Path) -> tuple[Any, str]:
    """The tokenizer and its hash as the tokenize stage records it (sha256 of the file, 16 hex)."""
    path = Path(tokenizer_dir) / "tokenizer.json"
    tok = load_tokenizer(path)
    return tok, sha256_file(path)[:16]


def checked_checkpoint(
    path: str | Path,
    study: Study,
    model_name: str,
    tokenizer_hash: str,
    vocab_size: int,
    stage: str | None = None,
) -> dict[str, Any]:
    """Read a checkpoint and require that it fits the params' model, the tokenizer and the stage.

    `stage` ("pretrain", "sft", "posttrain"): the stage that must have written it; a pretraining
    checkpoint has no stage mark, the later ones record theirs in `extra["stage"]`.
    """
    if model_name not in study.models:
        raise NextlabError(f"model {model_name!r} is not in params models: {sorted(study.models)}")
    ckpt = read_checkpoint(path)
    expected = GPTConfig.from_params(study.models[model_name], vocab_size).to_dict()
    check_compatible(ckpt, path, tokenizer_hash=tokenizer_hash, model_config=expected)
    if stage is not None:
        written_by = (ckpt.get("extra") or {}).get("stage", "pretrain")
        if written_by != stage:
            raise NextlabError(f"{path}: checkpoint was written by the {written_by} stage, expected {stage}")
    return ckpt
