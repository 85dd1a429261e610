"""Grading one answer against its gold answer: correct, wrong or abstain.

Normalisation (applied to both sides before comparing), in this order:
Unicode NFKC, casefold, typographic apostrophes to `'`, whitespace collapsed to single spaces and
stripped at both ends, then trailing punctuation (`.,;:!?` and spaces) stripped. Exact match after
that. Nothing else is forgiven: "1987" and "1987 AD" differ, as do "Velt" and "Veltmor".

An answer that normalises to "i don't know" is an abstention, whatever the gold answer is. For a
never-seen name (gold "I don't know") abstaining is the right move and is graded `abstain` (it
scores 0 under every scheme); any other answer there is `wrong`, a hallucination.

>>> normalize("  Veltmor.  ")
'veltmor'
>>> normalize("I DON’T  know!")
"i don't know"
>>> grade("veltmor", "Veltmor"), grade("Velt", "Veltmor"), grade("I don't know.", "Veltmor")
('correct', 'wrong', 'abstain')
>>> grade("Veltmor", "I don't know")
'wrong'
>>> split_confidence("Veltmor<|confidence|>0.7")
('Veltmor', 0.7)

This module is a leaf (it imports only the IDK literal), so post-training's rewards grade with
exactly the function evaluation uses.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from nextlab.data.world import IDK

CONFIDENCE_TOKEN = "<|confidence|>"
GRADES = ("correct", "wrong", "abstain")
Grade = Literal["correct", "wrong", "abstain"]

_SPACES = re.compile(r"\s+")
_TRAILING = ".,;:!? "
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*$")


def normalize(text: str) -> str:
    """The documented normalisation (module docstring)."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_APOSTROPHES)
    text = _SPACES.sub(" ", text).strip()
    return text.rstrip(_TRAILING)


_IDK_NORMAL = normalize(IDK)


def is_abstention(answer: str) -> bool:
    return normalize(answer) == _IDK_NORMAL


def grade(answer: str, gold: str) -> Grade:
    """`abstain` if the answer is "I don't know", else `correct` on exact normalised match."""
    if is_abstention(answer):
        return "abstain"
    return "correct" if normalize(answer) == normalize(gold) else "wrong"


def split_confidence(text: str) -> tuple[str, float | None]:
    """Split `answer<|confidence|>0.7` into the answer and the stated confidence.

    The confidence is None when the marker is missing or what follows it is not a number in
    [0, 1]: the calibrated scheme's reward treats that as the worst statement it could make.

    >>> split_confidence("Veltmor")
    ('Veltmor', None)
    >>> split_confidence("Veltmor<|confidence|>1.3")
    ('Veltmor', None)
    """
    if CONFIDENCE_TOKEN not in text:
        return text, None
    answer, _, stated = text.partition(CONFIDENCE_TOKEN)
    match = _NUMBER.match(stated)
    if not match:
        return answer, None
    value = float(match.group(1))
    return answer, value if 0.0 <= value <= 1.0 else None


def format_confidence(confidence: float) -> str:
    """The stated-confidence suffix, one decimal: `format_confidence(0.66) == '<|confidence|>0.7'`."""
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence {confidence} is outside [0, 1]")
    return f"{CONFIDENCE_TOKEN}{round(confidence, 1):.1f}"
