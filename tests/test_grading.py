"""Grading: the documented normalisation, abstention, stated confidences."""

import pytest

from nextlab.data import IDK
from nextlab.qa.grading import format_confidence, grade, is_abstention, normalize, split_confidence


@pytest.mark.parametrize(
    "raw, expected",
    [
        (" Veltmor", "veltmor"),  # the QA format's leading space
        ("Veltmor.", "veltmor"),
        ("VELTMOR!?", "veltmor"),
        ("Orin  Dask\tWorks", "orin dask works"),
        ("  1987 ", "1987"),
        ("I don’t know", "i don't know"),  # typographic apostrophe
        ("ﬁler", "filer"),  # NFKC folds the ligature
        ("Dr. Veltmor", "dr. veltmor"),  # inner punctuation stays
        ("", ""),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_grade_correct_wrong_abstain():
    assert grade(" Orin Dask Works", "Orin Dask Works") == "correct"
    assert grade("orin dask works.", "Orin Dask Works") == "correct"
    assert grade("Orin Dask", "Orin Dask Works") == "wrong"  # a prefix is not the answer
    assert grade("1987 AD", "1987") == "wrong"
    assert grade("", "1987") == "wrong"
    assert grade(" I don't know", "1987") == "abstain"
    assert grade("i DON'T know.", "Orin Dask Works") == "abstain"


def test_never_seen_names_abstain_or_hallucinate():
    # gold is IDK for never-seen names: abstaining is right (graded abstain, scores 0), guessing is wrong
    assert grade(IDK, IDK) == "abstain"
    assert grade("Veltmor", IDK) == "wrong"
    assert is_abstention(" I don't know.") and not is_abstention("I know")


def test_split_confidence():
    assert split_confidence(" Veltmor<|confidence|>0.7") == (" Veltmor", 0.7)
    assert split_confidence("Veltmor<|confidence|>1.0") == ("Veltmor", 1.0)
    assert split_confidence("Veltmor<|confidence|> 0 ") == ("Veltmor", 0.0)
    assert split_confidence("Veltmor<|confidence|>high") == ("Veltmor", None)
    assert split_confidence("Veltmor<|confidence|>1.2") == ("Veltmor", None)
    assert split_confidence("Veltmor<|confidence|>") == ("Veltmor", None)
    assert split_confidence("Veltmor") == ("Veltmor", None)


def test_format_confidence_round_trips():
    for q in (0.0, 0.04, 0.66, 0.95, 1.0):
        text = "x" + format_confidence(q)
        assert split_confidence(text) == ("x", round(q, 1))
    with pytest.raises(ValueError):
        format_confidence(1.5)
