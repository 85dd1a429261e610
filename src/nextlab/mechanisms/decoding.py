"""Decoding strategies side by side: what sampling buys in diversity and costs in accuracy.

On questions (the fine-tuned model, which answers or abstains): each strategy's answers graded
correct, wrong or abstain. On biographies (the pretrained model, prompted with a seen person's
name): how varied the text is (distinct word bigrams, within each biography and pooled over a
strategy's biographies; the share of each biography's word 4-grams that repeat one before) and how factual (for each attribute
the first value of its vocabulary the text states, right or not).

    >>> distinct_n(["a b a b", "a b c"], 2)             # bigrams: ab ba ab | ab bc -> 3 of 5
    0.6
    >>> repetition("x y z w x y z w", 4)                # 4-grams: xyzw yzwx zwxy wxyz xyzw -> 1 of 5
    0.2
    >>> stated_values("Ada Quill was born in Veltmor. Ada Quill works for Brightco.",
    ...               {"birth_city": ["Veltmor", "Ostra"], "employer": ["Brightco"], "occupation": ["baker"]})
    {'birth_city': 'Veltmor', 'employer': 'Brightco'}
"""

from __future__ import annotations

import re
from typing import Any

import torch


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct word n-grams over all texts, as a share of all their n-grams (NaN if none)."""
    grams = [tuple(w[i : i + n]) for w in map(words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def repetition(text: str, n: int) -> float:
    """The share of a text's word n-grams that already occurred earlier in it (0 when none do)."""
    w = words(text)
    grams = [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def stated_values(text: str, vocabularies: dict[str, list[str]]) -> dict[str, str]:
    """Per attribute, the first of its vocabulary's values the text states (whole words only)."""
    out = {}
    for attribute, values in vocabularies.items():
        hits = [(m.start(), v) for v in values for m in [re.search(rf"(?<!\w){re.escape(v)}(?!\w)", text)] if m]
        if hits:
            out[attribute] = min(hits)[1]
    return out


def sample(model: Any, prompts: list[list[int]], strategy: Any, max_new_tokens: int, seed: int,
           batch_size: int = 64) -> list[list[int]]:
    """Each prompt's completion under one strategy (new tokens, the end-of-text kept where emitted)."""
    from nextlab.generate import generate

    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    out: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        result = generate(model, prompts[start : start + batch_size], max_new_tokens=max_new_tokens,
                          temperature=strategy.temperature, top_k=strategy.top_k, top_p=strategy.top_p,
                          generator=generator)
        out += result.tokens
    return out
