"""The data stage as a function of params in, files out: `run(study, None, out)`.

It reads no earlier stage's files (a user corpus, if any, is named by params `data.user_corpus`),
so its `inputs` is None; every other stage's `run(study, inputs, out)` takes its `Inputs`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextlab.config import Study
from nextlab.data.corpus import qa_rows, reading_documents, relation_documents, synthetic_documents
from nextlab.data.user_corpus import read_user_corpus
from nextlab.data.world import World, build_world
from nextlab.io import atomic_path, sha256_files, write_json
from nextlab.provenance import provenance

# Which people's QA lines may enter pretraining: only the fine-tuning split's.
PRETRAINING_QA_SPLITS = {"finetune"}


def write_jsonl(path: Path, docs: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def singleton_rate(qa: pd.DataFrame) -> float:
    """Share of the facts seen in training that were seen exactly once (Kalai et al.'s sr)."""
    seen = qa[qa["seen"]]
    return float((seen["mentions"] == 1).mean()) if len(seen) else 0.0


def run(study: Study, inputs: None, out: str | Path) -> dict[str, Any]:
    """Write world.json, corpus/{train,val}.jsonl, qa.parquet and stats.json into `out`; return
    the stats."""
    params = study.data
    out = Path(out)
    user_docs = read_user_corpus(params.user_corpus.path) if params.user_corpus else []

    world = build_world(params, study.seed)
    rng = np.random.default_rng([study.seed, 1])
    splits = PRETRAINING_QA_SPLITS if params.qa_in_pretraining else set()
    qa = qa_rows(world, splits) if params.synthetic else qa_rows(World([], [], {}, study.seed), set())
    train, val = synthetic_documents(world, qa, params.val_mentions, rng) if params.synthetic else ([], [])

    if params.synthetic and params.reading_docs:
        train = train + reading_documents(world, params.reading_docs, study.seed)
        train = [train[i] for i in np.random.default_rng([study.seed, 5]).permutation(len(train))]
    if params.synthetic and world.relations:
        train = train + relation_documents(world, params.relation_mentions, study.seed)
        train = [train[i] for i in np.random.default_rng([study.seed, 9]).permutation(len(train))]
    if user_docs:
        order = np.random.default_rng([study.seed, 2]).permutation(len(user_docs))
        n_val = int(round(len(user_docs) * params.user_val_fraction)) if len(user_docs) > 1 else 0
        val_idx = set(order[:n_val].tolist())
        user_train = [d for i, d in enumerate(user_docs) if i not in val_idx]
        user_val = [d for i, d in enumerate(user_docs) if i in val_idx]
        train = train + user_train
        val = val + user_val
        train = [train[i] for i in rng.permutation(len(train))]

    out.mkdir(parents=True, exist_ok=True)
    world.save(out / "world.json")
    write_jsonl(out / "corpus" / "train.jsonl", train)
    write_jsonl(out / "corpus" / "val.jsonl", val)
    with atomic_path(out / "qa.parquet") as tmp:
        qa.to_parquet(tmp, index=False)

    data_hash = sha256_files([out / "world.json", out / "corpus" / "train.jsonl",
                              out / "corpus" / "val.jsonl", out / "qa.parquet"])[:16]
    stats: dict[str, Any] = {
        "people": len(world.people),
        "unseen_names": len(world.unseen),
        "facts": int(qa["seen"].sum()),
        "questions": len(qa),
        "singleton_rate": singleton_rate(qa),
        "train_documents": len(train),
        "val_documents": len(val),
        "train_chars": sum(len(d["text"]) for d in train),
        "val_chars": sum(len(d["text"]) for d in val),
        "bio_documents": sum(d["kind"] == "bio" for d in train),
        "qa_documents": sum(d["kind"] == "qa" for d in train),
        "user_documents": sum(d["kind"] == "user" for d in train),
        "reading_documents": sum(d["kind"] == "reading" for d in train),
        "relations": len(world.relations),
        "relation_documents": sum(d["kind"] == "relation" for d in train),
        "data_hash": data_hash,
    }
    for k in params.mention_mix:
        stats[f"people_k{k}"] = sum(p.mentions == k for p in world.people)
    for split in params.split_fractions:
        stats[f"questions_{split}"] = int((qa["split"] == split).sum())
    write_json(out / "stats.json", stats)
    write_json(out / "provenance.json", provenance(params, study.seed, data_hash))
    return stats
