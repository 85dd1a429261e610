"""The prompts the study decodes: evaluation questions and open-ended biography openings.

* QA prompts: the evaluation split of `qa.parquet`, in the QA format
  `<|bos|><|question|>{question}<|answer|>`, graded against the gold answer.
* Biography prompts: `<|bos|>` + an evaluation person's name + the first words of one of the
  biography sentence templates that begin with the name, e.g. `Talo Mirvek was born`; the model
  continues freely (no grade), from mid-sentence.
* Never-seen biographies (kind `unseen`): the same openings for names the model never saw, whose
  facts it can only guess: the uncertain ground where near-ties, and so flips, live.

Targets are a seeded sample of both kinds, from their most common token lengths; the neighbours a target is batched with are drawn from
the whole pool (every evaluation question and every evaluation person's opening), so a batch of 64
can hold 64 different prompts.

    >>> bio_opening("Ada Quill", "{name} was born in the city of {value}.", words=2)
    'Ada Quill was born'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextlab.data.templates import BIO_TEMPLATES
from nextlab.errors import NextlabError
from nextlab.qa.codec import QACodec
from nextlab.qa.inputs import require_split
from nextlab.tokenizer import BOS_ID


@dataclass(frozen=True)
class Prompt:
    prompt_id: str  # question_id for QA, "bio:<person_id>" for a biography opening
    kind: str  # "qa" or "bio"
    text: str
    tokens: tuple[int, ...]
    gold: str | None  # the gold answer of a QA prompt


# Templates that start with the name, so the prompt is "name + first words".
_OPENINGS = [t for templates in BIO_TEMPLATES.values() for t in templates if t.startswith("{name} ")]


def bio_opening(name: str, template: str, words: int) -> str:
    """The name and the first `words` words of `template` after it."""
    after = template.removeprefix("{name} ").split()
    return " ".join([name, *after[:words]])


def build_pool(qa: pd.DataFrame, qa_path: str | Path, codec: QACodec, tokenizer: Any, words: int,
               seed: int) -> tuple[list[Prompt], list[Prompt], list[Prompt]]:
    """Every evaluation QA prompt, every seen evaluation person's biography opening, and every
    never-seen name's."""
    rows = require_split(qa, "eval", qa_path).sort_values("question_id")
    qa_prompts = [
        Prompt(r.question_id, "qa", r.question, tuple(codec.prompt(r.question)), r.answer)
        for r in rows.itertuples()
    ]
    pools = []
    for seen, kind, stream in ((True, "bio", 5), (False, "unseen", 9)):
        people = rows[rows["seen"] == seen].drop_duplicates("person_id").sort_values("person_id")
        rng = np.random.default_rng([seed, stream])
        prompts = []
        for r in people.itertuples():
            text = bio_opening(r.name, _OPENINGS[int(rng.integers(len(_OPENINGS)))], words)
            ids = tokenizer.encode(text, add_special_tokens=False).ids
            prompts.append(Prompt(f"{kind}:{r.person_id}", kind, text, (BOS_ID, *ids), None))
        pools.append(prompts)
    return qa_prompts, pools[0], pools[1]


def choose_targets(qa_pool: list[Prompt], bio_pool: list[Prompt], n_qa: int, n_bio: int, seed: int,
                   where: str, unseen_pool: list[Prompt] = (), n_unseen: int = 0) -> list[Prompt]:
    """n_qa QA and n_bio biography prompts, taken from the most common token lengths first (seeded
    within a length), so that padding `none` can batch several targets of one length together;
    too few available is an error."""
    for n, pool, what, key in ((n_qa, qa_pool, "evaluation questions", "qa_prompts"),
                               (n_bio, bio_pool, "evaluation people with a biography", "bio_prompts"),
                               (n_unseen, unseen_pool, "never-seen names", "unseen_prompts")):
        if n > len(pool):
            raise NextlabError(
                f"nondeterminism.{key}={n}, but {where} has only {len(pool)} {what}; lower it"
            )
    rng = np.random.default_rng([seed, 6])
    return _pick(qa_pool, n_qa, rng) + _pick(bio_pool, n_bio, rng) + _pick(list(unseen_pool), n_unseen, rng)


def _pick(pool: list[Prompt], n: int, rng: np.random.Generator) -> list[Prompt]:
    """n prompts, from the most common token lengths first (seeded within a length)."""
    by_length: dict[int, list[Prompt]] = {}
    for prompt in pool:
        by_length.setdefault(len(prompt.tokens), []).append(prompt)
    chosen: list[Prompt] = []
    for length in sorted(by_length, key=lambda k: (-len(by_length[k]), k)):
        group = by_length[length]
        chosen += [group[i] for i in rng.permutation(len(group))][: n - len(chosen)]
    return sorted(chosen, key=lambda p: p.prompt_id)


# Words in an opening of the user's text: enough context to continue a sentence.
TEXT_PROMPT_WORDS = 8


def text_openings(text: str, words: int, stride: int) -> list[str]:
    """Openings cut from a user's document: `words` words ending mid-sentence, one every `stride`
    words, so the model continues the user's own text from inside a sentence. An opening never
    ends on a sentence's last word (the continuation would start a new sentence).

    >>> text_openings("The cat sat on the mat. Then it slept all day long.", words=3, stride=4)
    ['The cat sat', 'the mat. Then', 'slept all day']
    """
    tokens = text.split()
    openings = []
    for end in range(words, len(tokens) + 1, stride):
        last = tokens[end - 1]
        if end < len(tokens) and not last.endswith((".", "!", "?")):
            openings.append(" ".join(tokens[end - words : end]))
    return openings


def build_text_pool(documents: list[str], tokenizer: Any, words: int, max_tokens: int,
                    limit: int = 4096) -> list[Prompt]:
    """Prompts from a user corpus's held-out documents (kind `text`, no grade): mid-sentence
    openings of `words` words, at most `max_tokens` tokens with `<|bos|>`, `limit` at most."""
    pool: list[Prompt] = []
    for doc_index, text in enumerate(documents):
        for k, opening in enumerate(text_openings(text, words, stride=max(words, 8))):
            ids = tokenizer.encode(opening, add_special_tokens=False).ids
            if 0 < len(ids) < max_tokens:
                pool.append(Prompt(f"text:{doc_index}:{k}", "text", opening, (BOS_ID, *ids), None))
            if len(pool) >= limit:
                return pool
    return pool


def choose_text_targets(pool: list[Prompt], n: int, seed: int, where: str) -> list[Prompt]:
    """n openings of the user's text as targets, like `choose_targets`; too few is an error."""
    if n > len(pool):
        raise NextlabError(f"nondeterminism: {n} targets (qa_prompts + bio_prompts + unseen_prompts), but "
                           f"{where} gives only {len(pool)} mid-sentence openings; lower them")
    return _pick(pool, n, np.random.default_rng([seed, 6]))
