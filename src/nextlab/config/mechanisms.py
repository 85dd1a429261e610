"""Params of the mechanisms stage: what the note says happens inside the model, measured on it.

Three experiments on each model, one job per model:
* ablation: each layer's MLP and each attention head replaced, one at a time, by its mean output
  (or zeros), with fact recall and the loss on the other tokens measured on held-out biographies;
* heads: where each head looks from the position that must produce a question's answer;
* decoding: greedy decoding against sampling (temperature, top-k, top-p) on questions and on
  generated biographies;
* in context: questions about never-seen names answered with and without their biography in the
  prompt, the weights hashed before and after;
* kalai: the pretrained model forced to name every seen fact's value in its fresh biography, its
  calibration and error against the singleton rate (Kalai et al.'s bound).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from nextlab.config.base import Section

# What a job writes (the workflow plans its files from these names).
TABLES = ("ablation", "heads", "decoding_qa", "decoding_bio", "in_context", "kalai")


class DecodingStrategy(Section):
    """One way to pick the next token: greedy at temperature 0, else sampling from softmax(logits / T),
    optionally cut to the top k tokens or to the smallest set reaching probability top_p."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.=_-]*$")
    temperature: float = Field(ge=0.0, le=10.0)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _greedy_has_no_cut(self) -> "DecodingStrategy":
        if self.temperature == 0 and (self.top_k is not None or self.top_p is not None):
            raise ValueError(f"strategy {self.name!r}: greedy decoding (temperature 0) takes no top_k or top_p")
        return self


DEFAULT_STRATEGIES = (
    DecodingStrategy(name="greedy", temperature=0.0),
    DecodingStrategy(name="t0.5", temperature=0.5),
    DecodingStrategy(name="t1.0", temperature=1.0),
    DecodingStrategy(name="t1.5", temperature=1.5),
    DecodingStrategy(name="top-k5", temperature=1.0, top_k=5),
    DecodingStrategy(name="top-p0.9", temperature=1.0, top_p=0.9),
)


class MechanismsParams(Section):
    enabled: bool = Field(True, description="run the stage (its figures and claims leave the report when off)")
    ablation: Literal["mean", "zero"] = Field(
        "mean", description="what replaces an ablated component's output: its mean over real tokens, or zeros"
    )
    bios: int = Field(400, ge=1, description="held-out biographies the ablations and head roles are measured on "
                                             "(at most one per seen person)")
    questions: int = Field(200, ge=1, description="evaluation-split questions whose answer position the head "
                                                  "roles are read at")
    strategies: tuple[DecodingStrategy, ...] = Field(DEFAULT_STRATEGIES, min_length=1)
    qa_samples: int = Field(1, ge=1, le=16, description="samples per evaluation question and strategy")
    bio_people: int = Field(100, ge=1, description="evaluation-split people whose biography is generated")
    bio_tokens: int = Field(64, ge=8, description="new tokens of each generated biography")
    in_context_people: int = Field(100, ge=1, description="evaluation-split never-seen names whose biography "
                                                          "is put in the prompt (each asked every attribute)")
    bootstrap_samples: int = Field(1000, ge=20)

    @field_validator("strategies")
    @classmethod
    def _names_unique(cls, strategies: tuple[DecodingStrategy, ...]) -> tuple[DecodingStrategy, ...]:
        names = [s.name for s in strategies]
        if len(set(names)) != len(names):
            raise ValueError(f"strategy names repeat: {names}")
        if not any(s.temperature == 0 for s in strategies):
            raise ValueError("needs the greedy strategy (temperature 0): the others are compared with it")
        return strategies
