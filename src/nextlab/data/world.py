"""The synthetic world: fictional people, each with one value per attribute.

A world is fully determined by the data params and the seed. People are assigned a mention
count k (how many times their biography is written into the pretraining corpus) by the params'
mention mix, and a split (fine-tune, RL pool, calibration, evaluation) stratified by k so that
every split holds every k in the same proportions. Never-seen names get no biography at all.
Relations are order-sensitive facts between two seen people ("A mentored B"): disjoint pairs, so
no reverse is ever true.

>>> from nextlab.config import DataParams
>>> world = build_world(DataParams(n_people=40, n_unseen=8), seed=0)
>>> len(world.people), len(world.unseen)
(40, 8)
>>> sorted({p.mentions for p in world.people})
[1, 2, 4, 8, 16]
>>> len(world.relations), sorted(world.relations[0])
(20, ['mentee', 'mentor'])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nextlab.config import PEOPLE_SPLITS, DataParams
from nextlab.data.names import CITY_SUFFIXES, COMPANY_SUFFIXES, TRADE_SUFFIXES, WordMaker
from nextlab.errors import InputFileError, ParamsError
from nextlab.io import read_json, write_json

IDK = "I don't know"
WORLD_FORMAT = "nextlab-world"
WORLD_VERSION = 2  # 2: relations


@dataclass(frozen=True)
class Person:
    person_id: str
    name: str
    attributes: dict[str, str]
    mentions: int  # biography renderings in the training corpus; 0 = never seen
    split: str

    @property
    def seen(self) -> bool:
        return self.mentions > 0


@dataclass
class World:
    people: list[Person]
    unseen: list[Person]
    vocabularies: dict[str, list[str]]
    seed: int
    meta: dict[str, Any] = field(default_factory=dict)
    relations: list[dict[str, str]] = field(default_factory=list)  # {"mentor": person_id, "mentee": person_id}

    @property
    def everyone(self) -> list[Person]:
        return self.people + self.unseen

    def to_json(self) -> dict[str, Any]:
        return {
            "format": WORLD_FORMAT,
            "version": WORLD_VERSION,
            "seed": self.seed,
            "vocabularies": self.vocabularies,
            "people": [asdict(p) for p in self.people],
            "unseen": [asdict(p) for p in self.unseen],
            "relations": self.relations,
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "World":
        raw = read_json(path)
        if not isinstance(raw, dict) or raw.get("format") != WORLD_FORMAT:
            raise InputFileError(f"{path}: not a nextlab world file (expected format {WORLD_FORMAT!r})")
        if raw.get("version") != WORLD_VERSION:
            raise InputFileError(
                f"{path}: world format version {raw.get('version')} is not supported (expected {WORLD_VERSION})"
            )
        return cls(
            people=[Person(**p) for p in raw["people"]],
            unseen=[Person(**p) for p in raw["unseen"]],
            vocabularies=raw["vocabularies"],
            seed=raw["seed"],
            meta=raw.get("meta", {}),
            relations=raw.get("relations", []),
        )


def apportion(total: int, fractions: dict[Any, float]) -> dict[Any, int]:
    """Split `total` into integer counts proportional to `fractions` (largest remainder).

    >>> apportion(10, {"a": 0.55, "b": 0.45})
    {'a': 6, 'b': 4}
    """
    raw = {key: total * frac for key, frac in fractions.items()}
    counts = {key: int(np.floor(value)) for key, value in raw.items()}
    leftover = total - sum(counts.values())
    by_remainder = sorted(fractions, key=lambda key: (-(raw[key] - counts[key]), list(fractions).index(key)))
    for key in by_remainder[:leftover]:
        counts[key] += 1
    return counts


def _vocabularies(params: DataParams, maker: WordMaker, rng: np.random.Generator) -> dict[str, list[str]]:
    n = params.values_per_attribute
    vocab: dict[str, list[str]] = {}
    for attribute in params.attributes:
        if attribute == "birth_year":
            span = max(150, n)
            years = rng.choice(np.arange(1850, 1850 + span), size=n, replace=False)
            vocab[attribute] = [str(y) for y in sorted(years.tolist())]
        elif attribute == "birth_city":
            vocab[attribute] = maker.words(n, (1, 2), CITY_SUFFIXES, capitalize=True)
        elif attribute == "occupation":
            vocab[attribute] = maker.words(n, (1, 2), TRADE_SUFFIXES, capitalize=False)
        elif attribute == "employer":
            stems = maker.words(n, (2, 3), None, capitalize=True)
            vocab[attribute] = [f"{s} {COMPANY_SUFFIXES[rng.integers(len(COMPANY_SUFFIXES))]}" for s in stems]
    return vocab


def _names(count: int, maker: WordMaker) -> list[str]:
    firsts = [maker.word(int(maker.rng.choice((1, 2)))) for _ in range(count)]
    lasts = [maker.word(int(maker.rng.choice((2, 3)))) for _ in range(count)]
    return [f"{first} {last}" for first, last in zip(firsts, lasts)]


def build_world(params: DataParams, seed: int) -> World:
    """Draw the world. Raises ParamsError when a mention count would leave a split empty."""
    rng = np.random.default_rng(seed)
    maker = WordMaker(rng)
    vocab = _vocabularies(params, maker, rng)
    n_people = params.n_people if params.synthetic else 0
    names = _names(n_people + params.n_unseen, maker)

    # Mention counts: exact bucket sizes, then stratified splits inside each bucket.
    bucket_sizes = apportion(n_people, params.mention_mix) if n_people else {}
    order = rng.permutation(n_people)
    people: list[Person] = []
    start = 0
    for mentions, size in bucket_sizes.items():
        split_sizes = apportion(size, params.split_fractions)
        empty = [s for s, c in split_sizes.items() if c == 0]
        if empty:
            raise ParamsError(
                f"data.mention_mix: {mentions} mention(s) gets {size} of {n_people} people, leaving "
                f"split(s) {empty} without any; raise data.n_people or this fraction"
            )
        splits = [s for s, c in split_sizes.items() for _ in range(c)]
        for split, index in zip(splits, order[start : start + size]):
            people.append(_person(f"p{index:05d}", names[index], vocab, rng, mentions, split))
        start += size
    people.sort(key=lambda p: p.person_id)

    unseen_splits = apportion(params.n_unseen, params.split_fractions)
    unseen: list[Person] = []
    split_iter = iter(s for s in PEOPLE_SPLITS for _ in range(unseen_splits[s]))
    for i in range(params.n_unseen):
        unseen.append(_person(f"u{i:05d}", names[n_people + i], vocab, rng, 0, next(split_iter)))
    relations = draw_relations(people, params.relations, seed)
    return World(people=people, unseen=unseen, vocabularies=vocab, seed=seed, relations=relations)


def draw_relations(people: list[Person], count: int, seed: int) -> list[dict[str, str]]:
    """Up to `count` mentor -> mentee pairs of seen people, each person in at most one, so neither
    a reverse nor a chain holds. A stream of its own: the people drawn above do not change."""
    seen = [p.person_id for p in people if p.seen]
    order = np.random.default_rng([seed, 7]).permutation(len(seen))
    pairs = min(count, len(seen) // 2)
    return [{"mentor": seen[order[2 * i]], "mentee": seen[order[2 * i + 1]]} for i in range(pairs)]


def fresh_people(world: World, count: int, seed: int, split: str = "reading") -> list[Person]:
    """`count` new people with the world's vocabularies and names none of its people or never-seen
    names have (reading-comprehension subjects: they never enter the world or its questions)."""
    rng = np.random.default_rng([seed, 3])
    maker = WordMaker(rng)
    taken = {p.name for p in world.everyone}
    out: list[Person] = []
    while len(out) < count:
        for name in _names(count - len(out), maker):
            if name not in taken:
                taken.add(name)
                out.append(_person(f"r{len(out):05d}", name, world.vocabularies, rng, 1, split))
    return out


def _person(pid: str, name: str, vocab: dict[str, list[str]], rng: np.random.Generator,
            mentions: int, split: str) -> Person:
    attributes = {attr: values[int(rng.integers(len(values)))] for attr, values in vocab.items()}
    return Person(person_id=pid, name=name, attributes=attributes, mentions=mentions, split=split)
