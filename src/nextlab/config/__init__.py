"""The one params schema of nextlab, used by the library and checked by the Snakefile.

A params file is YAML; `load_study` reads it, validates every key and returns a frozen `Study`.
Any problem raises `ParamsError` whose message names the file, the key path, the bad value and
what is allowed, e.g.::

    params/default.yaml: data.mention_mix: fractions sum to 0.9, must sum to 1 (got {1: 0.5, 2: 0.4})
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from nextlab.config.base import Section
from nextlab.config.data import ATTRIBUTES, PEOPLE_SPLITS, DataParams, UserCorpus
from nextlab.config.nondeterminism import NondeterminismParams
from nextlab.config.posttrain import EvaluateParams, PosttrainParams, SFTParams
from nextlab.config.tokenizer import SPECIAL_TOKENS, TokenizerParams
from nextlab.config.tracking import TrackingParams
from nextlab.config.train import ModelParams, TrainParams
from nextlab.errors import ParamsError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

__all__ = [
    "ATTRIBUTES",
    "PEOPLE_SPLITS",
    "SPECIAL_TOKENS",
    "DataParams",
    "ModelParams",
    "ParamsError",
    "Study",
    "TokenizerParams",
    "TrackingParams",
    "TrainParams",
    "UserCorpus",
    "load_study",
    "section_dict",
    "validate_study",
]


class Study(Section):
    """A whole study: every stage's params. Unknown keys anywhere are errors."""

    study: str = Field("default", pattern=NAME_PATTERN, description="names results/<study>/")
    seed: int = Field(1234, ge=0, lt=2**32)
    data: DataParams = DataParams()
    tokenizer: TokenizerParams = TokenizerParams()
    models: dict[str, ModelParams] = Field(default_factory=lambda: {"small": ModelParams()})
    train: TrainParams = TrainParams()
    sft: SFTParams = SFTParams()
    posttrain: PosttrainParams = PosttrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    nondeterminism: NondeterminismParams = NondeterminismParams()
    tracking: TrackingParams = TrackingParams()

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: dict[str, ModelParams]) -> dict[str, ModelParams]:
        import re

        if not models:
            raise ValueError("needs at least one model")
        for name in models:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"model name {name!r} must match {NAME_PATTERN}")
        return models


def _format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<top level>"


def _format_error(err: dict[str, Any]) -> str:
    loc = _format_loc(err["loc"])
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (value {value!r}); check its spelling against the schema"
    if kind == "missing":
        return f"{loc}: required key is missing"
    msg = err["msg"].removeprefix("Value error, ")
    if kind.startswith(("greater", "less")) or kind.endswith(("_type", "_parsing")) or kind in (
        "literal_error",
        "string_pattern_mismatch",
        "enum",
    ):
        return f"{loc}: got {value!r}; {msg}"
    return f"{loc}: {msg}"


def validate_study(raw: Any, source: str = "<params>") -> Study:
    """Validate an already-parsed params mapping."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: must be a YAML mapping of keys to values, got {type(raw).__name__}")
    try:
        return Study.model_validate(raw)
    except ValidationError as err:
        lines = [_format_error(e) for e in err.errors()]
        raise ParamsError(f"{source}: " + ("\n  ".join(lines) if len(lines) > 1 else lines[0])) from None


def load_study(path: str | os.PathLike) -> Study:
    """Read and validate a params YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise ParamsError(f"{path}: not UTF-8 text") from None
    if raw is None:
        raw = {}
    return validate_study(raw, str(path))


def section_dict(study: Study, *keys: str) -> dict[str, Any]:
    """The given top-level sections of a study as plain data (what a rule's params receive)."""
    full = study.model_dump(mode="json")
    return {key: full[key] for key in keys}
