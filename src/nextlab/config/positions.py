"""Params of the positions stage: does the model need positional information to know word order?

The same model shape is pretrained once per variant, on the same corpus and tokens, for
`steps` steps (fewer than the main pretraining, so that four variants fit the study's budget):

* `learned`: a learned table of absolute positions (GPT-2);
* `rotary`: rotary embeddings (relative positions in attention);
* `none`: no positional information; only the causal mask can tell order;
* `order_blind`: no positions and no causal mask, so nothing in the model tells order.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from nextlab.config.base import Section

Variant = Literal["learned", "rotary", "none", "order_blind"]
VARIANTS: tuple[str, ...] = ("learned", "rotary", "none", "order_blind")
# What a job writes besides metrics.json and provenance.json.
TABLES = ("recall", "order", "curve")


class PositionsParams(Section):
    enabled: bool = Field(True, description="run the stage (its figure and claim leave the report when off)")
    variants: tuple[Variant, ...] = Field(VARIANTS, min_length=1)
    steps: int = Field(1000, ge=1, description="pretraining steps of each variant (batch, lr and schedule from "
                                               "train:)")
    recall_people: int = Field(100, ge=1, description="seen people whose facts are probed, every attribute each")
    candidates: int = Field(16, ge=2, description="values each fact's true one is ranked among (chance 1/candidates)")
    val_batches: int = Field(32, ge=1, description="held-out windows the validation loss is averaged over")

    @field_validator("variants")
    @classmethod
    def _unique(cls, variants: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(variants)) != len(variants):
            raise ValueError(f"variants repeat: {list(variants)}")
        return variants


def variant_shape(variant: str) -> dict[str, object]:
    """The model-params fields a variant sets.

    >>> variant_shape("order_blind")
    {'positional': 'none', 'causal': False}
    """
    if variant == "order_blind":
        return {"positional": "none", "causal": False}
    return {"positional": variant, "causal": True}
