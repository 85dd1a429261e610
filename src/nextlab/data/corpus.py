"""Write the world out as documents: biographies (k renderings per person) and QA lines.

Each biography rendering states every attribute once, with a randomly chosen paraphrase and a
shuffled sentence order, so the model must learn the facts rather than one sentence shape. The
validation text holds fresh renderings of every seen person that never enter training: how well
the model predicts their values measures memorised facts, by mention count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nextlab.data.templates import RELATION_TEMPLATES, qa_text, question, render_fact, render_relation
from nextlab.data.world import IDK, Person, World, fresh_people


def render_biography(person: Person, rng: np.random.Generator) -> dict[str, Any]:
    """One rendering: `{"text", "kind": "bio", "person", "spans"}`, where `spans` lists
    `[attribute, start, end]` character offsets of each value in the text."""
    attributes = list(person.attributes)
    order = rng.permutation(len(attributes))
    sentences, spans, offset = [], [], 0
    for i in order:
        attribute = attributes[int(i)]
        value = person.attributes[attribute]
        sentence = render_fact(attribute, int(rng.integers(1 << 16)), person.name, value)
        start = offset + sentence.index(value, sentence.index(person.name) + len(person.name))
        spans.append([attribute, start, start + len(value)])
        sentences.append(sentence)
        offset += len(sentence) + 1
    return {"text": " ".join(sentences), "kind": "bio", "person": person.person_id, "spans": spans}


def qa_rows(world: World, pretraining_splits: set[str]) -> pd.DataFrame:
    """One row per (person, attribute), for people and never-seen names alike."""
    rows = []
    for person in world.everyone:
        for attribute, value in person.attributes.items():
            rows.append(
                {
                    "question_id": f"{person.person_id}.{attribute}",
                    "person_id": person.person_id,
                    "name": person.name,
                    "attribute": attribute,
                    "question": question(attribute, person.name),
                    "answer": value if person.seen else IDK,
                    "mentions": person.mentions,
                    "split": person.split,
                    "seen": person.seen,
                    "in_pretraining": person.split in pretraining_splits,
                }
            )
    columns = ["question_id", "person_id", "name", "attribute", "question", "answer", "mentions",
               "split", "seen", "in_pretraining"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"mentions": "int64", "seen": "bool", "in_pretraining": "bool"})


def synthetic_documents(
    world: World, qa: pd.DataFrame, val_mentions: int, rng: np.random.Generator
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training and validation documents of the synthetic world, each list shuffled."""
    train: list[dict[str, Any]] = []
    val: list[dict[str, Any]] = []
    for person in world.people:
        train.extend(render_biography(person, rng) for _ in range(person.mentions))
        val.extend(render_biography(person, rng) for _ in range(val_mentions))
    for row in qa[qa["in_pretraining"]].itertuples(index=False):
        train.append({"text": qa_text(row.question, row.answer), "kind": "qa", "person": row.person_id})
    train = [train[i] for i in rng.permutation(len(train))]
    val = [val[i] for i in rng.permutation(len(val))]
    return train, val


def reading_documents(world: World, count: int, seed: int) -> list[dict[str, Any]]:
    """Reading-comprehension documents: a new person's biography, then one question on it and its
    answer, in the QA lines' format. What the model learns from them is to answer from its context:
    the person appears nowhere else, so the answer can only be read.

        Ilo Vask was born in 1931. Ilo Vask works for Drentel Works. ... <|question|>Which company
        does Ilo Vask work for?<|answer|> Drentel Works
    """
    rng = np.random.default_rng([seed, 4])
    docs = []
    for person in fresh_people(world, count, seed):
        bio = render_biography(person, rng)
        attribute = list(person.attributes)[int(rng.integers(len(person.attributes)))]
        qa = qa_text(question(attribute, person.name), person.attributes[attribute])
        docs.append({"text": f"{bio['text']} {qa}", "kind": "reading", "person": person.person_id})
    return docs


def relation_documents(world: World, mentions: int, seed: int) -> list[dict[str, Any]]:
    """Each relation written `mentions` times, with paraphrases drawn in turn from a shuffled cycle
    so every one is used (all name the mentor first):

        In those years Ada Quill mentored Bo Renk.
    """
    rng = np.random.default_rng([seed, 8])
    names = {p.person_id: p.name for p in world.people}
    docs = []
    for relation in world.relations:
        variants = rng.permutation(max(mentions, len(RELATION_TEMPLATES))) % len(RELATION_TEMPLATES)
        for variant in variants[:mentions]:
            text = render_relation(int(variant), names[relation["mentor"]], names[relation["mentee"]])
            docs.append({"text": text, "kind": "relation", "person": relation["mentor"], "mentee": relation["mentee"]})
    return docs
