"""Reward functions of each scheme, and scheme names in params."""

import pytest

from nextlab.config import ParamsError, validate_study
from nextlab.config.posttrain import parse_scheme
from nextlab.posttrain.rewards import reward, rewards


def test_binary():
    s = parse_scheme("binary")
    assert [reward(s, g) for g in ("correct", "wrong", "abstain")] == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("t, wrong", [(0.5, -1.0), (0.75, -3.0), (0.9, -9.0), (0.2, -0.25)])
def test_penalized(t, wrong):
    s = parse_scheme(f"penalized-{t}")
    assert s.t == t
    assert reward(s, "correct") == 1.0
    assert reward(s, "wrong") == pytest.approx(wrong)
    assert reward(s, "abstain") == 0.0


def test_penalized_expected_reward_favours_answering_only_above_t():
    s = parse_scheme("penalized-0.75")
    for p, answer_pays in ((0.7, False), (0.8, True)):
        expected = p * reward(s, "correct") + (1 - p) * reward(s, "wrong")
        assert (expected > reward(s, "abstain")) is answer_pays


def test_calibrated_is_correctness_minus_brier():
    s = parse_scheme("calibrated")
    assert reward(s, "correct", 1.0) == 1.0
    assert reward(s, "correct", 0.7) == pytest.approx(1 - 0.09)
    assert reward(s, "wrong", 0.7) == pytest.approx(-0.49)
    assert reward(s, "wrong", 0.0) == 0.0
    assert reward(s, "abstain", 0.0) == 0.0
    assert reward(s, "abstain", 0.5) == pytest.approx(-0.25)
    # no (readable) confidence: scored as the worst statement
    assert reward(s, "correct", None) == 0.0
    assert reward(s, "wrong", None) == -1.0


def test_calibrated_expected_reward_is_maximised_by_the_true_probability():
    s = parse_scheme("calibrated")
    p = 0.6
    grid = [q / 10 for q in range(11)]
    expected = [p * reward(s, "correct", q) + (1 - p) * reward(s, "wrong", q) for q in grid]
    assert grid[expected.index(max(expected))] == p


def test_none_has_no_reward_and_bad_grades_fail():
    with pytest.raises(ValueError, match="no reward"):
        reward(parse_scheme("none"), "correct")
    with pytest.raises(ValueError, match="grade"):
        reward(parse_scheme("binary"), "right")


def test_rewards_vectorised():
    s = parse_scheme("calibrated")
    assert rewards(s, ["correct", "wrong"], [1.0, None]).tolist() == [1.0, -1.0]


@pytest.mark.parametrize(
    "schemes, message",
    [
        (["penalized-1.0"], "t=1 must be strictly between 0 and 1"),
        (["penalized-0"], "t=0 must be strictly between 0 and 1"),
        (["penalized--0.5"], "must be strictly between 0 and 1"),
        (["penalized-abc"], "is not a number"),
        (["penalized:0.75"], "unknown scheme 'penalized:0.75'"),
        (["bianry"], "unknown scheme 'bianry'"),
        (["binary", "binary"], "schemes repeat"),
    ],
)
def test_bad_schemes_are_params_errors(schemes, message):
    with pytest.raises(ParamsError) as err:
        validate_study({"posttrain": {"schemes": schemes}}, "params.yaml")
    assert "posttrain.schemes" in str(err.value)
    assert message in str(err.value)


def test_bad_targets_and_seeds_are_params_errors():
    with pytest.raises(ParamsError, match="evaluate.targets"):
        validate_study({"evaluate": {"targets": [0.5, 1.0]}})
    with pytest.raises(ParamsError, match="posttrain.seeds"):
        validate_study({"posttrain": {"seeds": [1, 1]}})
