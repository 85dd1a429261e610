"""The evaluate stage: one model checkpoint in, its per-question answers and metrics out:
`run(study, Inputs(ckpt, data, tokenizer), out, model=name, scheme=name, seed=k)`.

Questions: the evaluation split (every mention-count bucket, plus never-seen names) and the
calibration split (only used to fit the temperature of `ece_ts`). Each is answered greedily and
graded (`grading`); confidences and candidate probabilities are described in `answers`.

Outputs in `out`:
- `answers.parquet`: one row per question, see docs/formats.md (every figure and metric can be
  recomputed from it without a model);
- `metrics.json`: flat, the same keys for every model and scheme (`summary.scheme_metrics`);
- `reliability.png`: the reliability diagram of this model's attempted answers;
- `timing.json`: how long answering and scoring took.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nextlab.config import Study
from nextlab.config.posttrain import parse_scheme
from nextlab.data.world import World
from nextlab.errors import InputFileError, NextlabError
from nextlab.evaluate.summary import bucket_of, scheme_metrics
from nextlab.evaluate.tables import ANSWER_COLUMNS, check_buckets, expected_buckets
from nextlab.io import atomic_path, read_json, write_json
from nextlab.model.checkpoint import load_model
from nextlab.model.device import resolve_device
from nextlab.provenance import provenance
from nextlab.qa.answers import candidate_columns, greedy_answers
from nextlab.qa.codec import QACodec
from nextlab.qa.inputs import checked_checkpoint, read_qa, require_split, tokenizer_and_hash

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Inputs:
    """The files an evaluate job reads."""

    ckpt: Path  # the checkpoint to evaluate
    data: Path  # the data stage's folder
    tokenizer: Path  # the tokenize stage's folder


def run(study: Study, inputs: Inputs, out: str | Path, *, model: str, scheme: str, seed: int) -> dict[str, Any]:
    """Answer, grade, score; write answers.parquet and metrics.json. Returns the metrics."""
    model_name, scheme_name = model, scheme
    ckpt_path, data_dir, tokenizer_dir = inputs.ckpt, inputs.data, inputs.tokenizer
    try:
        scheme = parse_scheme(scheme_name)
    except ValueError as err:
        raise NextlabError(str(err)) from None
    p = study.evaluate
    data_dir = Path(data_dir)
    qa_path = data_dir / "qa.parquet"
    qa = read_qa(qa_path)
    eval_rows = require_split(qa, "eval", qa_path)
    calib_rows = require_split(qa, "calibration", qa_path)
    buckets = expected_buckets(study)
    check_buckets(eval_rows, buckets, qa_path)
    world = World.load(data_dir / "world.json")
    unknown = sorted(set(eval_rows["attribute"]) - set(world.vocabularies))
    if unknown:
        raise InputFileError(f"{data_dir / 'world.json'}: no vocabulary for attribute(s) {unknown}")
    singleton_rate = read_json(data_dir / "stats.json").get("singleton_rate")

    tok, tok_hash = tokenizer_and_hash(tokenizer_dir)
    stage = "sft" if scheme.kind == "none" else "posttrain"
    ckpt = checked_checkpoint(ckpt_path, study, model_name, tok_hash, tok.get_vocab_size(), stage=stage)
    if stage == "posttrain":
        extra = ckpt.get("extra") or {}
        if extra.get("scheme") != scheme.name or extra.get("seed") != seed:
            raise NextlabError(
                f"{ckpt_path}: checkpoint is scheme {extra.get('scheme')!r} seed {extra.get('seed')!r}, "
                f"expected scheme {scheme.name!r} seed {seed}"
            )
    device = resolve_device(study.device)
    model, _ = load_model(ckpt_path, device)
    codec = QACodec(tok)

    start = time.perf_counter()
    tables = []
    for rows in (eval_rows, calib_rows):
        rows = rows.reset_index(drop=True)
        golds = rows["answer"].tolist()
        answered = greedy_answers(model, codec, rows["question"].tolist(), golds, p.max_answer_tokens, p.batch_size)
        if p.candidates and rows["split"].iloc[0] == "eval":
            cands = candidate_columns(model, codec, rows["question"].tolist(), rows["attribute"].tolist(),
                                      answered["answer"].tolist(), golds, world.vocabularies)
        else:
            cands = pd.DataFrame({"guess": [""] * len(rows), "guess_confidence": math.nan,
                                  "guess_seq_confidence": math.nan, "guess_correct": False, "cand_confidence": math.nan, "p_idk": math.nan})
        table = pd.concat([rows[["question_id", "person_id", "attribute", "mentions", "split", "seen"]],
                           answered, cands], axis=1)
        table["gold"] = golds
        tables.append(table)
    answers = pd.concat(tables, ignore_index=True)
    answers["bucket"] = [bucket_of(m) for m in answers["mentions"]]
    answers["model"], answers["scheme"], answers["seed"] = model_name, scheme.name, int(seed)
    answers = answers[ANSWER_COLUMNS].astype({"mentions": "int64", "seed": "int64", "seen": bool,
                                              "guess_correct": bool, "finished": bool})
    answer_seconds = time.perf_counter() - start

    metrics = scheme_metrics(
        [answers[answers["split"] == "eval"]], [answers[answers["split"] == "calibration"]],
        p.targets, p.bins, p.bootstrap_samples, study.seed, singleton_rate, buckets,
    )
    timing = {"answer_seconds": answer_seconds, "seconds": time.perf_counter() - start}

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "answers.parquet") as tmp:
        answers.to_parquet(tmp, index=False)
    write_json(out / "metrics.json", metrics)
    from nextlab.evaluate.figures import reliability  # matplotlib: only once the answers are in

    reliability(answers, out / "reliability.png", p.bins)
    write_json(out / "timing.json", timing)
    write_json(out / "provenance.json", provenance(p, seed, tok_hash))
    log.info("evaluate %s/%s/seed%d: accuracy %.3f, hallucination %.3f, abstention %.3f (%.1f s)", model_name,
             scheme.name, seed, metrics["accuracy"], metrics["hallucination"], metrics["abstention"],
             timing["seconds"])
    return metrics
