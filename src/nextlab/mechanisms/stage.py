"""The mechanisms stage: one job per model, five experiments on its trained weights.

One job is `run(study, Inputs(pretrain, sft, data, tokenizer), out, model=name)`. Outputs in `out`
(results/<study>/mechanisms/<model>/):

| file | content |
|---|---|
| `ablation.parquet` | per component (`none` = the clean model, `mlp.<l>`, `head.<l>.<h>`) x fact bucket (`all`, each mention count): recall and its change, the loss on non-fact tokens and its change, each change with a paired 95% bootstrap interval |
| `heads.parquet` | per layer x head x role: the answer position's attention share with a 95% interval, chance, whether it is the head's largest |
| `decoding_qa.parquet` | per strategy x sample x evaluation question: the answer and its grade |
| `decoding_bio.parquet` | per strategy x evaluation person: the generated biography, its repetition, the values it states and how many are right |
| `in_context.parquet` | per checkpoint (`pretrain`, `sft`) x condition (`none`, `context`, `other_context`) x never-seen name x attribute: the greedy answer and its grade against the biography's value, the weights' hash before and after |
| `kalai.parquet` | per seen fact of the fresh biographies: mention count, the pretrained model's forced answer (its likeliest value, normalised over the attribute's values), that answer's probability, whether it is right (`nextlab.evaluate.kalai`) |
| `metrics.json`, `provenance.json` | flat headline metrics; code version, params hash, data and tokenizer hashes, the checkpoints |

The ablations, head roles and Kalai et al.'s bound use the pretrained model (what pretraining
stored, before any fine-tuning); the questions are answered by the fine-tuned model, which knows
the QA format and abstention. The in-context questions go to both. Every check on params and inputs runs before a
model is loaded.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextlab.config import Study
from nextlab.config.mechanisms import TABLES
from nextlab.data.stage import read_jsonl
from nextlab.data.world import World
from nextlab.errors import NextlabError
from nextlab.evaluate.kalai import bound_summary, value_candidates
from nextlab.io import atomic_path, read_json, require_file, write_json
from nextlab.mechanisms.ablation import build_facts, run_ablations
from nextlab.mechanisms.decoding import distinct_n, repetition, sample, stated_values
from nextlab.mechanisms.heads import ATTRIBUTE_WORDS, ROLES, head_table, prompt_roles, query_attention, role_shares
from nextlab.mechanisms.in_context import answer_in_context, in_context_items, weights_hash
from nextlab.model.checkpoint import load_model
from nextlab.model.device import resolve_device
from nextlab.provenance import data_hash_of, provenance
from nextlab.qa.codec import QACodec, graded
from nextlab.qa.inputs import checked_checkpoint, read_qa, require_split, tokenizer_and_hash
from nextlab.tokenizer import BOS_ID

log = logging.getLogger(__name__)


def _subset(items: list[Any], n: int, seed: int) -> list[Any]:
    """n items drawn without replacement, in their original order (all of them if fewer)."""
    if len(items) <= n:
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), n, replace=False))
    return [items[i] for i in keep]


def head_prompts(qa: pd.DataFrame, codec: QACodec, n: int, seed: int, block_size: int) -> tuple[list, list]:
    """Evaluation-split questions about seen people: their prompts and each position's role."""
    rows = qa[(qa["split"] == "eval") & qa["seen"]].to_dict("records")
    prompts, role_lists = [], []
    for row in _subset(rows, n, seed):
        question = row["question"]
        enc = codec.tokenizer.encode(question, add_special_tokens=False)
        prompt = codec.prompt(question)
        if len(prompt) > block_size:
            continue
        start = question.index(row["name"])
        word = ATTRIBUTE_WORDS.get(row["attribute"])
        at = question.find(word) if word else -1
        attribute = (at, at + len(word)) if at >= 0 else None
        prompts.append(prompt)
        role_lists.append(prompt_roles(list(enc.offsets), (start, start + len(row["name"])), attribute))
    return prompts, role_lists


def decode_questions(model: Any, codec: QACodec, qa: pd.DataFrame, study: Study) -> pd.DataFrame:
    p = study.mechanisms
    rows = qa[qa["split"] == "eval"].reset_index(drop=True)
    prompts = [codec.prompt(q) for q in rows["question"]]
    out = []
    for s, strategy in enumerate(p.strategies):
        for k in range(1 if strategy.temperature == 0 else p.qa_samples):
            completions = sample(model, prompts, strategy, study.evaluate.max_answer_tokens,
                                 seed=study.seed * 1000 + 17 * s + k)
            for row, tokens in zip(rows.itertuples(index=False), completions):
                decoded = codec.decode(tokens)
                out.append({"strategy": strategy.name, "sample": k, "question_id": row.question_id,
                            "mentions": int(row.mentions), "seen": bool(row.seen), "answer": decoded.answer,
                            "grade": graded(decoded, row.answer)})
    return pd.DataFrame(out)


def decode_biographies(model: Any, tokenizer: Any, world: World, study: Study) -> pd.DataFrame:
    p = study.mechanisms
    people = _subset([q for q in world.people if q.split == "eval" and q.seen], p.bio_people, study.seed)
    prompts = [[BOS_ID, *tokenizer.encode(q.name, add_special_tokens=False).ids] for q in people]
    out = []
    for s, strategy in enumerate(p.strategies):
        completions = sample(model, prompts, strategy, p.bio_tokens, seed=study.seed * 1000 + 17 * s + 500)
        for person, tokens in zip(people, completions):
            text = person.name + tokenizer.decode(tokens, skip_special_tokens=True)
            stated = stated_values(text, world.vocabularies)
            right = sum(person.attributes.get(a) == v for a, v in stated.items())
            out.append({"strategy": strategy.name, "person_id": person.person_id, "mentions": person.mentions,
                        "text": text, "new_tokens": len(tokens), "repetition4": repetition(text, 4),
                        "stated": len(stated), "right": int(right), "attributes": len(person.attributes)})
    return pd.DataFrame(out)


def read_in_context(model: Any, checkpoint: str, tokenizer: Any, codec: QACodec, items: list[dict[str, Any]],
                    study: Study) -> list[dict[str, Any]]:
    """The in-context questions answered by one checkpoint, with its weights' hash before and after."""
    before = weights_hash(model)
    rows = answer_in_context(model, tokenizer, codec, items, study.evaluate.max_answer_tokens)
    after = weights_hash(model)
    return [{"checkpoint": checkpoint, **row, "weights_before": before, "weights_after": after} for row in rows]


def in_context_metrics(rows: pd.DataFrame) -> dict[str, float]:
    """Per checkpoint and condition: accuracy, hallucination and abstention over the questions that
    fit the context window; whether the weights were unchanged (1) by answering."""
    out: dict[str, float] = {}
    for (checkpoint, condition), g in rows.groupby(["checkpoint", "condition"], sort=False):
        g = g[g["grade"] != "skipped"]
        for grade_name, key in (("correct", "acc"), ("wrong", "halluc"), ("abstain", "abstain")):
            if len(g):
                out[f"in_context_{key}_{checkpoint}_{condition}"] = float((g["grade"] == grade_name).mean())
    for checkpoint, g in rows.groupby("checkpoint", sort=False):
        out[f"in_context_weights_unchanged_{checkpoint}"] = float((g["weights_before"] == g["weights_after"]).all())
    return out


def decoding_metrics(qa_rows: pd.DataFrame, bio_rows: pd.DataFrame) -> dict[str, float]:
    """Per strategy: QA accuracy (seen people), hallucination (wrong answers, all questions; and on
    never-seen names), abstention; the biographies' distinct-2 (pooled over a strategy's biographies,
    and per biography, averaged), repetition and factual precision."""
    out: dict[str, float] = {}
    for name, g in qa_rows.groupby("strategy", sort=False):
        seen, unseen = g[g["seen"]], g[~g["seen"]]
        out[f"qa_acc_{name}"] = float((seen["grade"] == "correct").mean()) if len(seen) else float("nan")
        out[f"qa_halluc_{name}"] = float((g["grade"] == "wrong").mean())
        out[f"qa_abstain_{name}"] = float((g["grade"] == "abstain").mean())
        if len(unseen):
            out[f"qa_halluc_unseen_{name}"] = float((unseen["grade"] == "wrong").mean())
    for name, g in bio_rows.groupby("strategy", sort=False):
        out[f"bio_distinct2_{name}"] = distinct_n(g["text"].tolist(), 2)
        out[f"bio_distinct2_per_text_{name}"] = float(np.nanmean([distinct_n([t], 2) for t in g["text"]]))
        out[f"bio_repetition4_{name}"] = float(g["repetition4"].mean())
        stated = int(g["stated"].sum())
        out[f"bio_precision_{name}"] = float(g["right"].sum() / stated) if stated else float("nan")
        out[f"bio_stated_{name}"] = float(g["stated"].mean())
    return {k: v for k, v in out.items() if v == v}


@dataclass(frozen=True)
class Inputs:
    """The files a mechanisms job reads."""

    pretrain: Path  # the pretrained checkpoint
    sft: Path  # the fine-tuned checkpoint (answers questions)
    data: Path  # the data stage's folder
    tokenizer: Path  # the tokenize stage's folder


def run(study: Study, inputs: Inputs, out: str | Path, *, model: str) -> dict[str, Any]:
    """The five experiments on `model`'s weights; write their tables and metrics.json into `out`;
    return the metrics."""
    model_name, pretrain_ckpt, sft_ckpt = model, inputs.pretrain, inputs.sft
    data_dir, tokenizer_dir = inputs.data, inputs.tokenizer
    p = study.mechanisms
    if not study.data.synthetic:
        raise NextlabError("the mechanisms stage needs the synthetic world (data.user_corpus.mode is 'replace')")
    data_dir = Path(data_dir)
    data_hash = data_hash_of(data_dir)
    tok, tok_hash = tokenizer_and_hash(tokenizer_dir)
    codec = QACodec(tok)
    qa_path = data_dir / "qa.parquet"
    qa = read_qa(qa_path)
    require_split(qa, "eval", qa_path)
    world = World.load(require_file(data_dir / "world.json", "world"))
    val = read_jsonl(require_file(data_dir / "corpus" / "val.jsonl", "held-out corpus"))
    singleton_rate = read_json(require_file(data_dir / "stats.json", "data stats"))["singleton_rate"]
    mentions = {q.person_id: q.mentions for q in world.people if q.seen}
    bios = _subset([d for d in val if d.get("kind") == "bio" and d.get("person") in mentions], p.bios, study.seed)
    if not bios:
        raise NextlabError(f"{data_dir / 'corpus' / 'val.jsonl'}: no held-out biographies of seen people to ablate on")
    block_size = study.models[model_name].block_size
    prompts, role_lists = head_prompts(qa, codec, p.questions, study.seed, block_size)
    if not prompts:
        raise NextlabError(f"{qa_path}: no evaluation question about a seen person fits block_size {block_size}")
    strangers = [q for q in world.unseen if q.split == "eval"]
    if not strangers:
        raise NextlabError(f"{data_dir / 'world.json'}: no never-seen names in the evaluation split for the "
                           "in-context questions; raise data.n_unseen")
    context_items = in_context_items(_subset(strangers, p.in_context_people, study.seed), study.seed)
    for path, stage in ((pretrain_ckpt, "pretrain"), (sft_ckpt, "sft")):
        checked_checkpoint(path, study, model_name, tok_hash, tok.get_vocab_size(), stage=stage)

    device = resolve_device(study.device)
    start = time.perf_counter()
    pretrained, _ = load_model(pretrain_ckpt, device)
    facts = build_facts(tok, bios, mentions, block_size)
    ablation = pd.DataFrame(run_ablations(pretrained, facts, p.ablation, p.bootstrap_samples, study.seed))
    shares, chance = role_shares(query_attention(pretrained, prompts), role_lists)
    heads = pd.DataFrame(head_table(shares, chance, p.bootstrap_samples, study.seed))
    bio_rows = decode_biographies(pretrained, tok, world, study)
    context_rows = read_in_context(pretrained, "pretrain", tok, codec, context_items, study)
    kalai = value_candidates(pretrained, tok, val, mentions, world.vocabularies)
    del pretrained
    tuned, _ = load_model(sft_ckpt, device)
    qa_rows = decode_questions(tuned, codec, qa, study)
    context_rows += read_in_context(tuned, "sft", tok, codec, context_items, study)
    seconds = time.perf_counter() - start

    in_context = pd.DataFrame(context_rows)
    tables = {"ablation": ablation, "heads": heads, "decoding_qa": qa_rows, "decoding_bio": bio_rows,
              "in_context": in_context, "kalai": kalai}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        with atomic_path(out / f"{name}.parquet") as tmp:
            tables[name].assign(model=model_name).to_parquet(tmp, index=False)
    metrics = job_metrics(ablation, heads) | decoding_metrics(qa_rows, bio_rows) | in_context_metrics(in_context)
    if len(kalai):
        bound = bound_summary(kalai, singleton_rate, study.evaluate.bins, p.bootstrap_samples, study.seed)
        metrics |= {f"kalai_{key}": value for key, value in bound.items() if math.isfinite(value)}
    write_json(out / "metrics.json", metrics)
    write_json(out / "timing.json", {"seconds": seconds})
    write_json(out / "provenance.json", {**provenance(p, study.seed, data_hash), "tokenizer_hash": tok_hash,
                                         "checkpoints": [str(pretrain_ckpt), str(sft_ckpt)]})
    log.info("mechanisms %s: %.1f s; %d facts over %d components, %d head prompts, %d strategies, %d in-context "
             "questions", model_name, seconds, len(facts.fact_doc), ablation["component"].nunique() - 1, len(prompts),
             len(p.strategies), len(context_items))
    return metrics


def job_metrics(ablation: pd.DataFrame, heads: pd.DataFrame) -> dict[str, float]:
    """Recall with nothing ablated, each component's change in recall (all facts) and in the other
    tokens' loss, and how many heads have each role as their largest."""
    every = ablation[ablation["facts"] == "all"]
    out = {"ablation_recall_clean": float(every[every["component"] == "none"]["recall"].iloc[0])}
    for row in every[every["component"] != "none"].itertuples(index=False):
        out[f"ablation_recall_delta_{row.component}"] = float(row.recall_delta)
        out[f"ablation_other_loss_delta_{row.component}"] = float(row.other_loss_delta)
    top = heads[heads["top"]]
    for role in ROLES:
        out[f"heads_top_{role}"] = float((top["role"] == role).sum())
    return out

