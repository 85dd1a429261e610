"""The QA format as token ids: prompts, target answers, and decoding what a model answered.

    prompt:  <|bos|><|question|>{question}<|answer|>
    answer:   {answer}<|eos|>                      (one leading space, as in the corpus)
    stated:   {answer}<|confidence|>0.7<|eos|>      (the calibrated scheme)

Pieces are encoded separately and concatenated; the special tokens cut the text into separately
pre-tokenized pieces, so this gives the ids of the whole line (the test suite checks it against the
tokenizer on `qa_text`).

>>> codec = QACodec(tokenizer)                                  # doctest: +SKIP
>>> codec.decode(codec.answer("Veltmor", confidence=0.66))      # doctest: +SKIP
Decoded(answer=' Veltmor', stated=0.7, tokens=..., finished=True)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from nextlab.qa.grading import Grade, grade, split_confidence
from nextlab.tokenizer import BOS_ID, EOS_ID
from nextlab.tokenizer.bpe import ANSWER_ID, CONFIDENCE_ID, QUESTION_ID


@dataclass(frozen=True)
class Decoded:
    answer: str  # the text before <|confidence|> / <|eos|>
    stated: float | None  # the stated confidence, if any was readable
    answer_tokens: int  # how many tokens the answer itself took
    finished: bool  # the model ended its answer (eos) rather than running out of tokens


class QACodec:
    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._encode = lru_cache(maxsize=65536)(self._encode_uncached)

    def _encode_uncached(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def prompt(self, question: str) -> list[int]:
        return [BOS_ID, QUESTION_ID, *self._encode(question), ANSWER_ID]

    def answer_body(self, answer: str) -> list[int]:
        """The answer's own tokens (with its leading space), no terminator."""
        return list(self._encode(" " + answer.strip()))

    def answer(self, answer: str, confidence: float | None = None) -> list[int]:
        """Target tokens: the answer, optionally `<|confidence|>` and one decimal, then `<|eos|>`."""
        tokens = self.answer_body(answer)
        if confidence is not None:
            if not 0.0 <= confidence <= 1.0:
                raise ValueError(f"confidence {confidence} is outside [0, 1]")
            tokens += [CONFIDENCE_ID, *self._encode(f"{round(confidence, 1):.1f}")]
        return tokens + [EOS_ID]

    def decode(self, tokens: list[int]) -> Decoded:
        """Split generated tokens into the answer text and the stated confidence."""
        finished = bool(tokens) and tokens[-1] == EOS_ID
        body = tokens[:-1] if finished else list(tokens)
        if CONFIDENCE_ID in body:
            cut = body.index(CONFIDENCE_ID)
            answer_ids, stated_ids = body[:cut], body[cut + 1 :]
            stated_text = "<|confidence|>" + self.tokenizer.decode(stated_ids, skip_special_tokens=True)
            _, stated = split_confidence(stated_text)
        else:
            answer_ids, stated = body, None
        answer = self.tokenizer.decode(answer_ids, skip_special_tokens=True)
        return Decoded(answer=answer, stated=stated, answer_tokens=len(answer_ids), finished=finished)


def graded(decoded: Decoded, gold: str) -> Grade:
    """The grade of a decoded answer. One that never ended (no <|eos|> within the token budget) is
    wrong: rambling is not an answer."""
    return grade(decoded.answer, gold) if decoded.finished else "wrong"


def answer_end(tokens: list[int]) -> int:
    """How many leading tokens make up the answer plus the token that ends it (<|eos|> or
    <|confidence|>); all of them when neither was produced. Confidence = exp(sum of their log-probs).

    >>> answer_end([11, 12, CONFIDENCE_ID, 40, EOS_ID]), answer_end([11, EOS_ID]), answer_end([11, 12])
    (3, 2, 2)
    """
    for i, t in enumerate(tokens):
        if t in (EOS_ID, CONFIDENCE_ID):
            return i + 1
    return len(tokens)
