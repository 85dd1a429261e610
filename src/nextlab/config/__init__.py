"""The one params schema of nextlab, used by the library and checked by the Snakefile.

A params file is YAML; `load_study` reads it, validates every key and returns a frozen `Study`.
Any problem raises `ParamsError` whose message names the file, the key path, the bad value and
what is allowed, e.g.::

    params/default.yaml: data.mention_mix: fractions sum to 0.9, must sum to 1 (got {1: 0.5, 2: 0.4})
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from nextlab.config.agent import AgentParams
from nextlab.config.base import Section
from nextlab.config.data import ATTRIBUTES, PEOPLE_SPLITS, DataParams, UserCorpus
from nextlab.config.mechanisms import MechanismsParams
from nextlab.config.nondeterminism import NondeterminismParams
from nextlab.config.positions import PositionsParams
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
    "JobStudy",
    "job_sections",
    "load_study",
    "section_dict",
    "study_from_sections",
    "validate_study",
]


class Study(Section):
    """A whole study: every stage's params. Unknown keys anywhere are errors."""

    study: str = Field("default", pattern=NAME_PATTERN, description="names results/<study>/")
    seed: int = Field(1234, ge=0, lt=2**32)
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where every stage that runs a model runs it: auto picks CUDA when present")
    data: DataParams = DataParams()
    tokenizer: TokenizerParams = TokenizerParams()
    models: dict[str, ModelParams] = Field(default_factory=lambda: {"small": ModelParams()})
    train: TrainParams = TrainParams()
    sft: SFTParams = SFTParams()
    posttrain: PosttrainParams = PosttrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    nondeterminism: NondeterminismParams = NondeterminismParams()
    mechanisms: MechanismsParams = MechanismsParams()
    positions: PositionsParams = PositionsParams()
    agent: AgentParams = AgentParams()
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

    @model_validator(mode="after")
    def _positions_fit_models(self) -> "Study":
        if self.positions.enabled and "rotary" in self.positions.variants:
            odd = [name for name, m in self.models.items() if (m.d_model // m.n_head) % 2]
            if odd:
                raise ValueError(f"positions.variants: rotary needs an even head size; models {odd} have an odd "
                                 "d_model/n_head (drop 'rotary' or change the model)")
        return self


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


# Keys that moved: (old section, key) -> where the key lives now. A params file written for the
# old layout gets one line saying where to put the value, not a generic "unknown key".
MOVED = {("train", "device"): "device"}


def _moved_key(raw: dict[str, Any]) -> str | None:
    """The first moved key `raw` still has, as the message that says where it went.

    >>> print(_moved_key({"train": {"device": "cuda"}}))  # doctest: +NORMALIZE_WHITESPACE
    train.device: moved to the top level of the params (it is where every stage runs, not a training
    setting); write `device: cuda` there
    """
    for (section, key), new in MOVED.items():
        if isinstance(raw.get(section), dict) and key in raw[section]:
            return (f"{section}.{key}: moved to the top level of the params (it is where every stage runs, "
                    f"not a training setting); write `{new}: {raw[section][key]}` there")
    return None


def validate_study(raw: Any, source: str = "<params>") -> Study:
    """Validate an already-parsed params mapping."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: must be a YAML mapping of keys to values, got {type(raw).__name__}")
    moved = _moved_key(raw)
    if moved:
        raise ParamsError(f"{source}: {moved}")
    try:
        return Study.model_validate(raw)
    except ValidationError as err:
        lines = [_format_error(e) for e in err.errors()]
        raise ParamsError(f"{source}: " + ("\n  ".join(lines) if len(lines) > 1 else lines[0])) from None


def _duplicate_key(node: yaml.Node, path: str = "") -> str | None:
    """The first key given twice in one mapping, as its dotted path with both lines (PyYAML would
    keep the last value silently, so a duplicated `steps:` would quietly override the first)."""
    if isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            where = f"{path}.{key}" if path else key
            if key in lines:
                return f"{where} is given twice (lines {lines[key]} and {key_node.start_mark.line + 1})"
            lines[key] = key_node.start_mark.line + 1
            found = _duplicate_key(value_node, where)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_key(item, f"{path}[{i}]")
            if found:
                return found
    return None


def load_study(path: str | os.PathLike) -> Study:
    """Read and validate a params YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        text = path.read_text(encoding="utf-8")
        duplicate = _duplicate_key(yaml.compose(text, Loader=yaml.SafeLoader))
        if duplicate:
            raise ParamsError(f"{path}: {duplicate}; give each key once")
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
    except UnicodeDecodeError:
        raise ParamsError(f"{path}: not UTF-8 text") from None
    if raw is None:
        raw = {}
    return validate_study(raw, str(path))


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{problem} at line {mark.line + 1}" if mark is not None else problem


def section_dict(study: Study, *keys: str) -> dict[str, Any]:
    """The given top-level sections of a study as plain data."""
    full = study.model_dump(mode="json")
    return {key: full[key] for key in keys}


# ---- what one job is given ----------------------------------------------------------------------

WITHHELD = "_withheld"


def job_sections(study: Study, *sections: str, models: list[str] | None = None,
                 withhold: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The params one job receives, as plain data: whole top-level `sections`, the shapes of
    `models` only if given (a job of one model does not see the others), and no `withhold` keys (lists
    such as the schemes to run, which name jobs rather than shape them). This is the job's rerun
    fingerprint and its only source of params (`study_from_sections` reads it back).

    >>> job = job_sections(Study(), "study", "seed", "train", models=["small"])
    >>> sorted(job), list(job["models"])
    (['models', 'seed', 'study', 'train'], ['small'])
    """
    full = study.model_dump(mode="json")
    job = {key: full[key] for key in sections}
    if models is not None:
        job["models"] = {name: full["models"][name] for name in models}
    for section, keys in (withhold or {}).items():
        for key in keys:
            job[section].pop(key)
    if withhold:
        job[WITHHELD] = {section: sorted(keys) for section, keys in withhold.items()}
    return job


def study_from_sections(job: dict[str, Any], source: str = "job params") -> "JobStudy":
    """Validate a job's params (`job_sections`'s output) into a study that lets the job read only
    what it was given: reading any other section or a withheld key is an error naming it, never a
    silent default."""
    job = dict(job)
    withheld = {section: set(keys) for section, keys in job.pop(WITHHELD, {}).items()}
    given = set(job) | {"study"}
    return JobStudy(validate_study(job, source), given, withheld)


class JobStudy:
    """A `Study` restricted to the params one job was given (see `study_from_sections`)."""

    def __init__(self, study: Study, given: set[str], withheld: dict[str, set[str]]):
        self._study, self._given, self._withheld = study, given, withheld

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._study, name)
        if name not in Study.model_fields:
            return value
        if name not in self._given:
            raise AttributeError(
                f"params section {name!r} was not given to this job (it has {sorted(self._given)}); "
                "the workflow rule must pass it, or the result would not follow it"
            )
        hidden = self._withheld.get(name)
        return _SectionView(value, name, hidden) if hidden else value

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        dump = self._study.model_dump(**kwargs)
        out = {k: v for k, v in dump.items() if k in self._given}
        for section, hidden in self._withheld.items():
            out[section] = {k: v for k, v in out[section].items() if k not in hidden}
        return out


class _SectionView:
    def __init__(self, section: Section, name: str, hidden: set[str]):
        self._section, self._name, self._hidden = section, name, hidden

    def __getattr__(self, key: str) -> Any:
        if key in self._hidden:
            raise AttributeError(f"params {self._name}.{key} is withheld from this job (it names jobs, "
                                 "not what one job computes)")
        return getattr(self._section, key)

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        return {k: v for k, v in self._section.model_dump(**kwargs).items() if k not in self._hidden}
