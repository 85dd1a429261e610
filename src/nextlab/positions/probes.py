"""What a pretrained variant knows, measured the same way whether or not it is causal.

Both probes compare whole sentences by their summed log-probability, so a model that sees the
whole sequence at once (the order-blind control) is measured like the others: it can tell
sentences apart only by the tokens they hold and how they pair up, never by where they sit.

* **recall**: a fact counts as known when its true value gives the most likely sentence among
  `candidates` values of the attribute ("Ada Quill works for Brightco." against the same
  sentence with other companies); chance is 1 / candidates.
* **order**: for each relation "A mentored B" seen in training, is "... A mentored B." more likely
  than "... B mentored A." (summed over the paraphrases)? Both sentences hold the same tokens, so
  only order separates them; chance is 1/2. Pairs of unrelated people, in an arbitrary direction,
  are the control: there nothing is true, and a model should prefer neither. A model whose input
  carries no order (the order-blind control) can still pass: the score is a product of next-token
  probabilities, and which token follows which is order, learned by the objective itself.

    >>> pairs = control_pairs(["p1", "p2", "p3", "p4", "p5"], {"p1"}, seed=0)
    >>> len(pairs), all("p1" not in pair for pair in pairs)
    (2, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nextlab.data.templates import RELATION_TEMPLATES, render_fact, render_relation
from nextlab.generate import score
from nextlab.tokenizer import BOS_ID


def sentence_logprobs(model: torch.nn.Module, tokenizer: Any, sentences: list[str], batch_size: int = 128) -> np.ndarray:
    """log P(sentence | <|bos|>) for each sentence: the sum over its tokens."""
    encodings = tokenizer.encode_batch(sentences, add_special_tokens=False)
    with torch.no_grad():
        return np.array(score(model, [[BOS_ID]] * len(sentences), [e.ids for e in encodings], batch_size))


def recall_rows(model: torch.nn.Module, tokenizer: Any, people: list[Any], vocabularies: dict[str, list[str]],
                candidates: int, seed: int) -> list[dict[str, Any]]:
    """One row per (person, attribute): the true value's rank among `candidates` values (0 = best)."""
    rng = np.random.default_rng([seed, 11])
    items, sentences = [], []
    for person in people:
        for attribute, value in person.attributes.items():
            others = [v for v in vocabularies[attribute] if v != value]
            k = min(candidates - 1, len(others))
            pool = [value] + [others[i] for i in rng.choice(len(others), k, replace=False)]
            items.append((person, attribute, len(pool)))
            sentences += [render_fact(attribute, 0, person.name, v) for v in pool]
    logp = sentence_logprobs(model, tokenizer, sentences)
    rows, at = [], 0
    for person, attribute, n in items:
        scores = logp[at : at + n]
        at += n
        rank = int((scores[1:] > scores[0]).sum())
        rows.append({"person_id": person.person_id, "attribute": attribute, "mentions": person.mentions,
                     "candidates": n, "rank": rank, "correct": rank == 0})
    return rows


def control_pairs(person_ids: list[str], related: set[str], seed: int) -> list[tuple[str, str]]:
    """Disjoint pairs of people in no relation, in a random direction."""
    free = [p for p in person_ids if p not in related]
    order = np.random.default_rng([seed, 12]).permutation(len(free))
    return [(free[order[2 * i]], free[order[2 * i + 1]]) for i in range(len(free) // 2)]


def order_rows(model: torch.nn.Module, tokenizer: Any, names: dict[str, str], relations: list[dict[str, str]],
               controls: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Per pair: log P of the stated direction and of the reverse (summed over the paraphrases)."""
    pairs = [("relation", r["mentor"], r["mentee"]) for r in relations] + [("control", a, b) for a, b in controls]
    sentences = []
    for _, a, b in pairs:
        for variant in range(len(RELATION_TEMPLATES)):
            sentences += [render_relation(variant, names[a], names[b]), render_relation(variant, names[b], names[a])]
    logp = sentence_logprobs(model, tokenizer, sentences).reshape(len(pairs), len(RELATION_TEMPLATES), 2)
    rows = []
    for (kind, a, b), lp in zip(pairs, logp):
        forward, reverse = float(lp[:, 0].sum()), float(lp[:, 1].sum())
        rows.append({"kind": kind, "first": a, "second": b, "logp_forward": forward, "logp_reverse": reverse,
                     "margin": forward - reverse, "prefers_forward": forward > reverse})
    return rows
