"""Measures of how much batching moves a prompt's logits and completions (pure functions).

Logit level, teacher forced: the same tokens are fed alone and in a batch, and the logits of each
step (the distribution over the next token) are compared::

    >>> alone = torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.99, 0.0]])
    >>> batched = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.01, 0.0]])
    >>> s = compare_logits(alone, batched)
    >>> s.not_equal.tolist(), s.flip.tolist()
    ([False, True], [False, True])
    >>> [round(m, 2) for m in s.margin.tolist()]       # top-1 minus top-2 logit, alone
    [1.0, 0.01]

Completion level, free running: token lists are compared up to and including the first
end-of-text, and the first position where two completions part is their divergence::

    >>> first_divergence([5, 6, 7, 1], [5, 6, 9, 1])
    2
    >>> first_divergence([5, 6, 1], [5, 6, 1, 4], eos_id=1) is None    # equal up to <|eos|>
    True
    >>> unique_count([[5, 1], [5, 1], [6, 1]])
    2
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepComparison:
    """Per step (row of the logits): bitwise different, max and mean |difference|, argmax flip,
    and the alone logits' top-1 minus top-2 margin (how close the choice was)."""

    not_equal: torch.Tensor  # (S,) bool
    max_abs: torch.Tensor  # (S,) float
    mean_abs: torch.Tensor  # (S,) float
    flip: torch.Tensor  # (S,) bool
    margin: torch.Tensor  # (S,) float


def top2_margin(logits: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 logit per row of (S, V) logits (infinite for a single-token vocabulary)."""
    if logits.size(-1) < 2:
        return torch.full(logits.shape[:-1], float("inf"))
    top = torch.topk(logits.float(), 2, dim=-1).values
    return top[..., 0] - top[..., 1]


def compare_logits(alone: torch.Tensor, batched: torch.Tensor) -> StepComparison:
    """Compare (S, V) logits of the same S steps computed alone and inside a batch.

    Bitwise equality is judged in the logits' own dtype; differences are taken in fp64 so that
    they are exact for fp32, bf16 and fp16 values.
    """
    if alone.shape != batched.shape:
        raise ValueError(f"logits of different shapes: alone {tuple(alone.shape)}, batched {tuple(batched.shape)}")
    if alone.numel() == 0:
        empty = torch.zeros(alone.shape[:-1])
        return StepComparison(empty.bool(), empty, empty, empty.bool(), empty)
    # != is False for -0.0 vs 0.0 and True for NaN vs NaN; compare the raw bits instead.
    not_equal = _bits(alone).ne(_bits(batched)).any(dim=-1)
    diff = (alone.double() - batched.double()).abs()
    return StepComparison(
        not_equal=not_equal,
        max_abs=diff.amax(dim=-1).float(),
        mean_abs=diff.mean(dim=-1).float(),
        flip=alone.argmax(dim=-1).ne(batched.argmax(dim=-1)),
        margin=top2_margin(alone),
    )


def _bits(x: torch.Tensor) -> torch.Tensor:
    ints = {8: torch.int64, 4: torch.int32, 2: torch.int16}[x.element_size()]
    return x.contiguous().view(ints)


def truncate(tokens: Sequence[int], eos_id: int | None) -> list[int]:
    """The tokens up to and including the first `eos_id` (all of them if there is none)."""
    tokens = list(tokens)
    if eos_id is not None and eos_id in tokens:
        return tokens[: tokens.index(eos_id) + 1]
    return tokens


def first_divergence(a: Sequence[int], b: Sequence[int], eos_id: int | None = None) -> int | None:
    """Index of the first token where two completions differ (after truncation at `eos_id`);
    the shorter length when one is a prefix of the other; None when they are equal."""
    a, b = truncate(a, eos_id), truncate(b, eos_id)
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def unique_count(completions: Sequence[Sequence[int]], eos_id: int | None = None) -> int:
    """How many distinct completions (after truncation at `eos_id`)."""
    return len({tuple(truncate(c, eos_id)) for c in completions})
