"""The argument the nondeterminism study starts from: floating-point addition is not associative,
so a reduction's result depends on the order (the grouping) in which a kernel adds, and a change
in the last bits of a logit is enough to flip an argmax where the top two are that close.

Every case here is exact IEEE 754 arithmetic (round to nearest even), the same on every machine."""

from __future__ import annotations

import numpy as np
import torch

from nextlab.nondeterminism.measures import compare_logits


def test_addition_is_not_associative_in_float64():
    a, b, c = 1e16, -1e16, 1.0
    assert (a + b) + c == 1.0
    assert a + (b + c) == 0.0  # 1e16 + ... : -1e16 + 1 rounds back to -1e16 (ulp there is 2)
    assert (0.1 + 0.2) + 0.3 != 0.1 + (0.2 + 0.3)


def test_addition_is_not_associative_in_float32_and_bfloat16():
    f = np.float32
    big, one = f(2.0**24), f(1.0)  # float32 has 24 significand bits: 2^24 + 1 is not representable
    assert (big + one) + one == big  # each +1 rounds away (ties to even)
    assert big + (one + one) == big + f(2.0)
    bf = lambda x: torch.tensor(x, dtype=torch.bfloat16)  # noqa: E731  8 significand bits
    assert ((bf(256.0) + bf(1.0)) + bf(1.0)).item() == 256.0
    assert (bf(256.0) + (bf(1.0) + bf(1.0))).item() == 258.0


def _sequential(xs: list[np.float32]) -> np.float32:
    total = np.float32(0.0)
    for x in xs:
        total = np.float32(total + x)
    return total


def _blocked(xs: list[np.float32], lanes: int) -> np.float32:
    """How a vectorised kernel sums: `lanes` partial sums, combined at the end."""
    partial = [_sequential(xs[i::lanes]) for i in range(lanes)]
    return _sequential(partial)


def test_the_grouping_of_a_reduction_changes_its_bits():
    # A dot product's terms summed in the order of one kernel and in the order of another: the
    # same numbers, a different grouping, a different float32 result.
    xs = [np.float32(v) for v in (1e8, 1.0, -1e8, 1.0, 3.0, -2.5, 7.25, 0.125)]
    one_lane, two_lanes = _sequential(xs), _blocked(xs, 2)
    assert (one_lane, two_lanes) == (np.float32(8.875), np.float32(9.875))  # 1e8 + 1 loses the 1
    exact = sum(float(x) for x in xs)  # exact in float64 here
    assert two_lanes == exact != one_lane


def test_a_last_bit_change_flips_argmax_only_where_the_top_two_are_that_close():
    down = lambda x: torch.nextafter(x, torch.tensor(-float("inf")))  # noqa: E731  one ulp lower
    top, five = torch.tensor(3.0), torch.tensor(5.0)
    alone = torch.stack([torch.stack([top, down(top), torch.tensor(0.0)]),  # a near tie
                         torch.tensor([5.0, 1.0, 0.0])])
    # Another reduction order moves a logit by an ulp or two.
    batched = alone.clone()
    batched[0, 0] = down(down(top))
    batched[1, 0] = down(five)
    s = compare_logits(alone, batched)
    assert s.not_equal.tolist() == [True, True]
    assert s.flip.tolist() == [True, False]  # the same kind of nudge; only the near tie flips
    assert float(s.margin[0]) < 1e-6 < 1.0 < float(s.margin[1])
