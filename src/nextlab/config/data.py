"""Params of the data stage: the synthetic world, its corpus, its QA splits, a user corpus."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from nextlab.config.base import Section

ATTRIBUTES = ("birth_year", "birth_city", "occupation", "employer")
PEOPLE_SPLITS = ("finetune", "rl", "calibration", "eval")


class UserCorpus(Section):
    """A folder of `.txt` files, or one `.jsonl` file (or a folder of them) with a `text` field."""

    path: Path
    mode: Literal["add", "replace"] = "add"


class DataParams(Section):
    n_people: int = Field(400, ge=4, le=1_000_000, description="fictional people in the corpus")
    attributes: tuple[str, ...] = Field(ATTRIBUTES, min_length=1)
    values_per_attribute: int = Field(
        40, ge=2, le=5000, description="size of each attribute's fictional vocabulary"
    )
    mention_mix: dict[int, float] = Field(
        default_factory=lambda: {1: 0.25, 2: 0.15, 4: 0.2, 8: 0.2, 16: 0.2},
        description="mention count k -> fraction of people whose biography appears k times",
    )
    split_fractions: dict[str, float] = Field(
        default_factory=lambda: {"finetune": 0.5, "rl": 0.2, "calibration": 0.1, "eval": 0.2},
        description="fraction of people (and of never-seen names) in each QA split",
    )
    n_unseen: int = Field(200, ge=0, le=1_000_000, description="names that never appear in any training text")
    qa_in_pretraining: bool = Field(
        True,
        description="mix the fine-tuning split's QA lines (and its never-seen names' "
        "'I don't know' lines) into the pretraining corpus",
    )
    reading_docs: int = Field(
        0, ge=0, le=1_000_000,
        description="reading-comprehension documents in pretraining: a new person's biography, then a "
        "question on it and its answer (what in-context answering needs; see the mechanisms stage)",
    )
    relations: int = Field(
        100, ge=0, le=500_000,
        description="order-sensitive facts between two seen people ('A mentored B', whose reverse is false), "
        "each written `relation_mentions` times into pretraining; each person is in at most one "
        "(the positions stage's order probe)",
    )
    relation_mentions: int = Field(8, ge=1, le=1024, description="renderings of each relation in pretraining")
    val_mentions: int = Field(
        1, ge=0, le=8, description="extra fresh biographies per person, held out as validation text"
    )
    user_corpus: UserCorpus | None = None
    user_val_fraction: float = Field(0.05, gt=0, lt=1)

    @field_validator("attributes")
    @classmethod
    def _known_attributes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [a for a in value if a not in ATTRIBUTES]
        if unknown:
            raise ValueError(f"unknown attribute(s) {unknown}; allowed: {list(ATTRIBUTES)}")
        if len(set(value)) != len(value):
            raise ValueError(f"attributes repeat: {list(value)}")
        return value

    @field_validator("mention_mix")
    @classmethod
    def _valid_mix(cls, mix: dict[int, float]) -> dict[int, float]:
        if not mix:
            raise ValueError("needs at least one mention count")
        for k, frac in mix.items():
            if k < 1 or k > 1024:
                raise ValueError(f"mention count {k} must be between 1 and 1024")
            if frac < 0 or frac > 1:
                raise ValueError(f"fraction {frac} for {k} mentions must be in [0, 1]")
        total = sum(mix.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"fractions sum to {total:g}, must sum to 1")
        return dict(sorted(mix.items()))

    @field_validator("split_fractions")
    @classmethod
    def _valid_splits(cls, fractions: dict[str, float]) -> dict[str, float]:
        if set(fractions) != set(PEOPLE_SPLITS):
            raise ValueError(f"must name exactly the splits {list(PEOPLE_SPLITS)}, got {sorted(fractions)}")
        for name, frac in fractions.items():
            if frac <= 0 or frac >= 1:
                raise ValueError(f"fraction {frac} for split {name!r} must be in (0, 1)")
        total = sum(fractions.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"fractions sum to {total:g}, must sum to 1")
        return {name: fractions[name] for name in PEOPLE_SPLITS}

    @model_validator(mode="after")
    def _enough_people(self) -> "DataParams":
        needed = len(self.mention_mix) * len(PEOPLE_SPLITS)
        if self.user_corpus is None or self.user_corpus.mode == "add":
            if self.n_people < needed:
                raise ValueError(
                    f"n_people={self.n_people} is too few: every mention count needs a person in "
                    f"each of the {len(PEOPLE_SPLITS)} splits (at least {needed})"
                )
        return self

    @property
    def synthetic(self) -> bool:
        return self.user_corpus is None or self.user_corpus.mode == "add"
