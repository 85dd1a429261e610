"""The tokenize stage as a function of files in, files out: `run(study, Inputs(corpus), out)`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nextlab.config import Study
from nextlab.errors import InputFileError
from nextlab.io import atomic_path, require_file, sha256_file, write_json
from nextlab.provenance import provenance
from nextlab.tokenizer.bpe import encode_documents, train_bpe


def _texts(path: Path) -> list[str]:
    require_file(path, "corpus file")
    texts = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                texts.append(json.loads(line)["text"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputFileError(f"{path}:{number}: expected a JSON object with a 'text' field") from None
    return texts


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


@dataclass(frozen=True)
class Inputs:
    corpus: Path  # the data stage's corpus folder: train.jsonl, val.jsonl


def run(study: Study, inputs: Inputs, out: str | Path) -> dict[str, Any]:
    """Train the BPE on corpus/train.jsonl; write tokenizer.json, train.npy, val.npy, stats.json;
    return the stats."""
    corpus_dir, out = Path(inputs.corpus), Path(out)
    train_texts = _texts(corpus_dir / "train.jsonl")
    val_path = corpus_dir / "val.jsonl"
    val_texts = _texts(val_path) if val_path.exists() and val_path.stat().st_size else []

    tok = train_bpe(train_texts, study.tokenizer.vocab_size, study.tokenizer.min_frequency)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "tokenizer.json") as tmp:
        tok.save(str(tmp))
    dtype = token_dtype(tok.get_vocab_size())

    stats: dict[str, Any] = {"vocab_size": tok.get_vocab_size()}
    used: set[int] = set()
    for split, texts in (("train", train_texts), ("val", val_texts)):
        docs = encode_documents(tok, texts)
        ids = np.fromiter((i for doc in docs for i in doc), dtype=dtype, count=sum(map(len, docs)))
        with atomic_path(out / f"{split}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, ids)
        text_bytes = sum(len(t.encode("utf-8")) for t in texts)
        content_tokens = len(ids) - 2 * len(docs)
        stats[f"{split}_tokens"] = int(len(ids))
        stats[f"{split}_documents"] = len(docs)
        stats[f"{split}_bytes_per_token"] = text_bytes / content_tokens if content_tokens else 0.0
        if split == "train":
            used = set(np.unique(ids).tolist())
    stats["vocab_used"] = len(used)
    stats["vocab_used_fraction"] = len(used) / tok.get_vocab_size()
    stats["tokenizer_hash"] = sha256_file(out / "tokenizer.json")[:16]
    write_json(out / "stats.json", stats)
    write_json(out / "provenance.json", provenance(study.tokenizer, study.seed, stats["tokenizer_hash"]))
    return stats
