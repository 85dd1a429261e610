"""Params of supervised fine-tuning, post-training under reward schemes, and evaluation.

A reward scheme is named by one string, the same in params, paths, MLflow run names and tables:

    none              the SFT model itself (no post-training): the baseline
    binary            correct 1, wrong 0, abstain 0
    penalized-<t>     correct 1, wrong -t/(1-t), abstain 0, for a target t in (0, 1), e.g. penalized-0.75
    calibrated        answer + stated confidence q, reward correct - (q - correct)^2 (RLCR)

>>> parse_scheme("penalized-0.75")
Scheme(name='penalized-0.75', kind='penalized', t=0.75)
>>> parse_scheme("penalized-1.5")
Traceback (most recent call last):
...
ValueError: scheme 'penalized-1.5': t=1.5 must be strictly between 0 and 1
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator

from nextlab.config.base import Section

SCHEME_KINDS = ("none", "binary", "penalized", "calibrated")
_PENALIZED = re.compile(r"^penalized-(\S+)$")
_SCHEME_HELP = "allowed: none, binary, calibrated, penalized-<t> with 0 < t < 1 (e.g. penalized-0.75)"


@dataclass(frozen=True)
class Scheme:
    name: str
    kind: Literal["none", "binary", "penalized", "calibrated"]
    t: float | None = None

    @property
    def trains(self) -> bool:
        """`none` is the SFT model as is: no post-training job."""
        return self.kind != "none"


def parse_scheme(name: str) -> Scheme:
    """The scheme a name stands for; ValueError naming what is allowed otherwise."""
    if name in ("none", "binary", "calibrated"):
        return Scheme(name, name)  # type: ignore[arg-type]
    match = _PENALIZED.match(name)
    if not match:
        raise ValueError(f"unknown scheme {name!r}; {_SCHEME_HELP}")
    try:
        t = float(match.group(1))
    except ValueError:
        raise ValueError(f"scheme {name!r}: {match.group(1)!r} is not a number; {_SCHEME_HELP}") from None
    if not 0.0 < t < 1.0:
        raise ValueError(f"scheme {name!r}: t={t:g} must be strictly between 0 and 1")
    return Scheme(name, "penalized", t)


class SFTParams(Section):
    """Supervised fine-tuning on the fine-tune split's questions, loss on answer tokens only."""

    steps: int = Field(60, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-4, gt=0, le=1.0)
    warmup_steps: int = Field(5, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 disables clipping")
    confidence_steps: int = Field(
        120, ge=1, description="steps teaching the calibrated scheme's confidence format (its own SFT model)"
    )
    confidence_lr: float = Field(3e-4, gt=0, le=1.0)

    @model_validator(mode="after")
    def _warmup_fits(self) -> "SFTParams":
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} exceeds steps={self.steps}")
        return self


class PosttrainParams(Section):
    """On-policy policy gradient with a group baseline and a KL penalty to the SFT model."""

    schemes: tuple[str, ...] = Field(
        ("none", "binary", "penalized-0.5", "penalized-0.75", "penalized-0.9", "calibrated"),
        min_length=1,
        description="reward schemes, each post-trained from the SFT model (none = the SFT model)",
    )
    seeds: tuple[int, ...] = Field((1, 2, 3), min_length=1, description="one post-training run per seed")
    steps: int = Field(30, ge=1, description="policy-gradient steps")
    questions_per_step: int = Field(12, ge=1)
    group_size: int = Field(6, ge=2, description="sampled answers per question (the group baseline)")
    temperature: float = Field(0.7, gt=0, le=2.0, description="sampling temperature of the policy")
    lr: float = Field(2e-4, gt=0, le=1.0)
    kl_coef: float = Field(0.05, ge=0, description="weight of the per-token KL to the SFT model")
    grad_clip: float = Field(1.0, ge=0)
    finetune_share: float = Field(
        0.25, ge=0, lt=1, description="share of each step's questions drawn from the fine-tune split"
    )
    max_answer_tokens: int = Field(16, ge=1, le=256)
    batch_invariant: bool = Field(
        False, description="sample and train through the batch-invariant kernels: the trainer's log-probs are "
        "the sampler's bits (exactly on-policy); the mismatch is logged per step either way",
    )
    invariant_control: tuple[str, ...] = Field(
        (), description="schemes post-trained a second time, every seed, through the batch-invariant "
        "kernels (models/<model>/posttrain_invariant/): the report sets these exactly on-policy runs beside the "
        "default ones (reward curves, sampler-trainer KL, final metrics, cost per step); [] runs none",
    )
    decision_steps: int = Field(
        0, ge=0, description="steps of the answer-or-abstain phase before policy gradient (binary, penalized): "
        "a fine-tune on the start model's best guesses where they are right and 'I don't know' where they are "
        "wrong, weighted by the scheme's costs (nextlab.posttrain.decision); 0 skips it",
    )
    decision_lr: float = Field(1e-4, gt=0, le=1.0, description="peak lr of the answer-or-abstain phase")
    decision_targets: Literal["outcome", "belief", "recalibrated"] = Field(
        "outcome", description="outcome: the better action given whether the guess is right, weighted by "
        "the scheme's costs; belief: the better action by the start model's own probability of its guess; "
        "recalibrated: by that probability mapped to the share of right guesses at it (nextlab.posttrain.decision)",
    )
    advantage: Literal["group", "vs_abstain", "factored"] = Field(
        "group", description="group: reward minus the group's mean; vs_abstain: each answer against abstaining; "
        "factored: answer-or-abstain and which value learned apart, answers drawn given answering "
        "(see nextlab.posttrain.policy_gradient)"
    )

    @field_validator("schemes")
    @classmethod
    def _known_schemes(cls, schemes: tuple[str, ...]) -> tuple[str, ...]:
        first: dict[tuple[str, float | None], str] = {}
        for name in schemes:
            scheme = parse_scheme(name)
            twin = first.setdefault((scheme.kind, scheme.t), name)
            if twin != name:
                raise ValueError(f"{twin!r} and {name!r} are the same scheme (they would run identical jobs)")
            if name in first.values() and list(schemes).count(name) > 1:
                raise ValueError(f"schemes repeat: scheme {name!r} is listed twice")
        return schemes

    @model_validator(mode="after")
    def _control_is_a_trained_scheme(self) -> "PosttrainParams":
        for name in self.invariant_control:
            if name not in self.schemes or not parse_scheme(name).trains:
                raise ValueError(f"invariant_control: {name!r} is not a post-trained scheme of schemes "
                                 f"{list(self.schemes)}")
        if len(set(self.invariant_control)) != len(self.invariant_control):
            raise ValueError(f"invariant_control repeats a scheme: {list(self.invariant_control)}")
        if self.invariant_control and self.batch_invariant:
            raise ValueError("invariant_control: with batch_invariant true every run is already exactly on-policy; "
                             "set invariant_control: [] (there is no default-kernel run to compare)")
        return self

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError(f"seeds must be distinct non-negative integers, got {list(seeds)}")
        return seeds

    @property
    def parsed(self) -> list[Scheme]:
        return [parse_scheme(name) for name in self.schemes]


class EvaluateParams(Section):
    """Evaluation of every model on the held-out questions."""

    targets: tuple[float, ...] = Field(
        (0.0, 0.5, 0.75, 0.9), min_length=1, description="confidence targets t the answers are scored under"
    )
    bins: int = Field(10, ge=2, le=100, description="bins of the ECE (equal width and equal mass)")
    bootstrap_samples: int = Field(1000, ge=0, le=100_000, description="0 disables the intervals")
    candidates: bool = Field(
        True, description="also score every value of the attribute's vocabulary (candidate-normalised confidence)"
    )
    batch_size: int = Field(64, ge=1, description="questions decoded at once")
    max_answer_tokens: int = Field(16, ge=1, le=256)

    @field_validator("targets")
    @classmethod
    def _targets_in_range(cls, targets: tuple[float, ...]) -> tuple[float, ...]:
        bad = [t for t in targets if not 0.0 <= t < 1.0]
        if bad:
            raise ValueError(f"targets {bad} must be in [0, 1)")
        return tuple(sorted(set(targets)))
