"""Inference conditions on the prompt; it does not learn. A never-seen name's biography (the
attributes the data stage drew for it, never written in any training text) is put before a
question about it, and the same question is asked without it:

    <|bos|>Ilo Vask was born in 1931. Ilo Vask works for Drentel Works. ...<|question|>Which
    company does Ilo Vask work for?<|answer|>

and, as a control, with another never-seen person's biography in its place (the answer is not
there to read). The weights are hashed before and after: answering from the context changes no
parameter, so whatever the model got right it got from the prompt alone.

    >>> conditions = CONDITIONS
    >>> conditions
    ('none', 'context', 'other_context')
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from nextlab.data.corpus import render_biography
from nextlab.data.templates import ANSWER_TOKEN, QUESTION_TOKEN, question
from nextlab.tokenizer import BOS_ID

CONDITIONS = ("none", "context", "other_context")


def weights_hash(model: torch.nn.Module) -> str:
    """SHA-256 (16 hex digits) over every parameter and buffer, by name, in the model's dtype."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def context_prompt(tokenizer: Any, biography: str | None, question_text: str) -> list[int]:
    """The token ids of `[biography ]<|question|>question<|answer|>` after bos: the reading
    documents' shape (and, without a biography, the QA lines')."""
    text = f"{biography} " if biography else ""
    return [BOS_ID, *tokenizer.encode(f"{text}{QUESTION_TOKEN}{question_text}{ANSWER_TOKEN}",
                                      add_special_tokens=False).ids]


def in_context_items(people: list[Any], seed: int) -> list[dict[str, Any]]:
    """One item per person and attribute: the question, the answer the biography states, the
    person's own biography and another person's (the control), rendered with fresh paraphrases."""
    rng = np.random.default_rng([seed, 6])
    biographies = [render_biography(p, rng)["text"] for p in people]
    items = []
    for i, person in enumerate(people):
        other = biographies[(i + 1) % len(people)] if len(people) > 1 else None
        for attribute, value in person.attributes.items():
            items.append({"person_id": person.person_id, "attribute": attribute, "answer": value,
                          "question": question(attribute, person.name), "context": biographies[i],
                          "other_context": other})
    return items


def answer_in_context(model: torch.nn.Module, tokenizer: Any, codec: Any, items: list[dict[str, Any]],
                      max_answer_tokens: int) -> list[dict[str, Any]]:
    """Greedy answers to every item under each condition, graded against the biography's value
    (`"skipped"` where the prompt does not fit the model's context window)."""
    from nextlab.generate import generate
    from nextlab.qa.grading import grade

    block_size = model.config.block_size
    rows = []
    for condition in CONDITIONS:
        prompts = [context_prompt(tokenizer, None if condition == "none" else item[condition], item["question"])
                   for item in items]
        fits = [i for i, p in enumerate(prompts) if len(p) + max_answer_tokens <= block_size]
        answers: dict[int, tuple[str, bool]] = {}
        for start in range(0, len(fits), 64):
            chunk = fits[start : start + 64]
            result = generate(model, [prompts[i] for i in chunk], max_new_tokens=max_answer_tokens)
            for i, tokens in zip(chunk, result.tokens):
                decoded = codec.decode(tokens)
                answers[i] = (decoded.answer, decoded.finished)
        for i, item in enumerate(items):
            answer, finished = answers.get(i, ("", False))
            rows.append({"condition": condition, "person_id": item["person_id"], "attribute": item["attribute"],
                         "prompt_tokens": len(prompts[i]), "answer": answer,
                         "grade": "skipped" if i not in answers else
                         grade(answer, item["answer"]) if finished else "wrong"})
    return rows
