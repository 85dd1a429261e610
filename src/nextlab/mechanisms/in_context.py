"""Inference conditions on the prompt; it does not learn. A never-seen name's biography (the
attributes the data stage drew for it, never written in any training text) is put before a
question about it, and the same question is asked without it:

    <|bos|>Ilo Vask was born in 1931. Ilo Vask works for Drentel Works. ...<|question|>Which
    company does Ilo Vask work for?<|answer|>

and, as a control, with another never-seen person's biography in its place (the answer is not
there to read). The weights are hashed before and after: answering from the context changes no
parameter, so whatever the model got right it got from the prompt alone.

    >>> model = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=1, d_model=8))
    >>> before = weights_hash(model)
    >>> _ = model(torch.tensor([[1, 2, 3]]))
    >>> weights_hash(model) == before, len(before)
    (True, 16)
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from nextlab.data.corpus import render_biography
from nextlab.data.templates import ANSWER_TOKEN, QUESTION_TOKEN, question
from nextlab.model import GPT, GPTConfig  # noqa: F401  (the docstring's example)
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
    from nextlab.config.mechanisms import DecodingStrategy
    from nextlab.mechanisms.decoding import sample
    from nextlab.qa.codec import graded

    greedy = DecodingStrategy(name="greedy", temperature=0.0)
    block_size = model.config.block_size
    rows = []
    for condition in CONDITIONS:
        prompts = [context_prompt(tokenizer, None if condition == "none" else item[condition], item["question"])
                   for item in items]
        fits = [i for i, p in enumerate(prompts) if len(p) + max_answer_tokens <= block_size]
        completions = sample(model, [prompts[i] for i in fits], greedy, max_answer_tokens, seed=0)
        answers = {i: codec.decode(tokens) for i, tokens in zip(fits, completions)}
        for i, item in enumerate(items):
            decoded = answers.get(i)
            rows.append({"condition": condition, "person_id": item["person_id"], "attribute": item["attribute"],
                         "prompt_tokens": len(prompts[i]), "answer": "" if decoded is None else decoded.answer,
                         "grade": "skipped" if decoded is None else graded(decoded, item["answer"])})
    return rows
