"""The agent stage: one job per model, from its fine-tuned checkpoint.

One job is `run(study, Inputs(sft, data, tokenizer), out, model=name)`. Outputs in `out`
(results/<study>/agent/<model>/):

| file | content |
|---|---|
| `ckpt.pt` | the tool-using model (the fine-tuned model after tool-use fine-tuning) |
| `episodes.parquet` | per condition (`no_tool`: the fine-tuned model answering directly; `tool`: the tool-using model in the loop) x evaluation question: the answer, its grade, model calls, tool calls, bad calls, whether the step limit was hit, the trace |
| `curve.parquet` | the tool-use fine-tuning loss per step |
| `metrics.json`, `provenance.json` | flat headline metrics; code version, params hash, data and tokenizer hashes |

Every check on params and inputs runs before a model is loaded.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from nextlab.agent.loop import Episode, grade_episode, run_agent
from nextlab.agent.policy import ModelPolicy
from nextlab.agent.tools import Toolbox, lookup_records, record_text
from nextlab.agent.traces import tool_examples
from nextlab.config import Study
from nextlab.data.templates import question
from nextlab.data.world import World, fresh_people
from nextlab.errors import NextlabError
from nextlab.io import atomic_path, require_file, write_json
from nextlab.model.checkpoint import load_model, save_checkpoint
from nextlab.model.device import resolve_device
from nextlab.posttrain.sft import SFTConfig, finetune
from nextlab.provenance import data_hash_of, provenance
from nextlab.qa.codec import QACodec
from nextlab.qa.inputs import checked_checkpoint, read_qa, require_split, tokenizer_and_hash

log = logging.getLogger(__name__)


def episode_rows(condition: str, episodes: list[Episode], questions: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for episode, q in zip(episodes, questions.itertuples(index=False)):
        rows.append({"condition": condition, "question_id": q.question_id, "mentions": int(q.mentions),
                     "seen": bool(q.seen), "answer": episode.answer, "grade": grade_episode(episode, q.answer),
                     "steps": episode.steps, "tool_calls": episode.tool_calls, "bad_calls": episode.bad_calls,
                     "hit_limit": episode.hit_limit, "trace": json.dumps(episode.trace)})
    return rows


def agent_metrics(episodes: pd.DataFrame) -> dict[str, float]:
    """Per condition: accuracy on seen people (all, and per mention count), hallucination (wrong
    answers over all questions, and on never-seen names), abstention, tool calls and bad calls per
    question, and the share of loops that hit the step limit."""
    out: dict[str, float] = {}
    for condition, g in episodes.groupby("condition", sort=False):
        seen, unseen = g[g["seen"]], g[~g["seen"]]
        out[f"{condition}_acc"] = float((seen["grade"] == "correct").mean())
        for k, gk in seen.groupby("mentions"):
            out[f"{condition}_acc_k{int(k)}"] = float((gk["grade"] == "correct").mean())
        out[f"{condition}_halluc"] = float((g["grade"] == "wrong").mean())
        if len(unseen):
            out[f"{condition}_halluc_unseen"] = float((unseen["grade"] == "wrong").mean())
            out[f"{condition}_abstain_unseen"] = float((unseen["grade"] == "abstain").mean())
        out[f"{condition}_abstain"] = float((g["grade"] == "abstain").mean())
        out[f"{condition}_tool_calls"] = float(g["tool_calls"].mean())
        out[f"{condition}_bad_calls"] = float(g["bad_calls"].mean())
        out[f"{condition}_hit_limit"] = float(g["hit_limit"].mean())
    return out


def training_examples(world: World, train_rows: pd.DataFrame, records: dict[str, str], codec: QACodec, tok: Any,
                      fresh: int, seed: int) -> list:
    """Tool-use traces of the fine-tune split's questions and of `fresh` new people's (every
    attribute each), whose records only the traces' toolbox holds."""
    people = fresh_people(world, fresh, seed, split="agent") if fresh else []
    rows = train_rows.to_dict("records") + [
        {"name": q.name, "question": question(a, q.name), "answer": v} for q in people for a, v in q.attributes.items()]
    return tool_examples(rows, records | {q.name: record_text(q) for q in people}, codec, tok)


def train_and_run(model: torch.nn.Module, tok: Any, codec: QACodec, examples: list, records: dict[str, str],
                  rows: pd.DataFrame, p: Any, seed: int) -> tuple[list[Episode], list[Episode], list[dict], ModelPolicy]:
    """The fine-tuned model's direct answers to `rows`' questions, then (after tool-use fine-tuning
    in place) its episodes in the loop with the tool; the fine-tuning curve and the policy."""
    questions = rows["question"].tolist()
    direct = run_agent(ModelPolicy(model, tok, codec, p.reply_tokens), questions, Toolbox({}), max_steps=1)
    cfg = SFTConfig(steps=p.steps, batch_size=p.batch_size, lr=p.lr, warmup_steps=min(p.warmup_steps, p.steps))
    curve = finetune(model, examples, cfg, torch.Generator().manual_seed(seed + 19))
    policy = ModelPolicy(model, tok, codec, p.reply_tokens)
    with_tool = run_agent(policy, questions, Toolbox(records), max_steps=p.max_steps)
    return direct, with_tool, curve, policy


@dataclass(frozen=True)
class Inputs:
    """The files an agent job reads."""

    sft: Path  # the fine-tuned checkpoint
    data: Path  # the data stage's folder
    tokenizer: Path  # the tokenize stage's folder


def run(study: Study, inputs: Inputs, out: str | Path, *, model: str) -> dict[str, Any]:
    """Teach `model`'s fine-tuned checkpoint to use the lookup tool and compare it with answering
    directly; write the tables, ckpt.pt and metrics.json into `out`; return the metrics."""
    model_name, sft_ckpt, data_dir, tokenizer_dir = model, inputs.sft, inputs.data, inputs.tokenizer
    p = study.agent
    if not study.data.synthetic:
        raise NextlabError("the agent stage needs the synthetic world (data.user_corpus.mode is 'replace')")
    data_dir = Path(data_dir)
    qa_path = data_dir / "qa.parquet"
    qa = read_qa(qa_path)
    train_rows = require_split(qa, "finetune", qa_path)
    eval_rows = require_split(qa, "eval", qa_path).reset_index(drop=True)
    world = World.load(require_file(data_dir / "world.json", "world"))
    tok, tok_hash = tokenizer_and_hash(tokenizer_dir)
    codec = QACodec(tok)
    checked_checkpoint(sft_ckpt, study, model_name, tok_hash, tok.get_vocab_size(), stage="sft")
    records = lookup_records(world)
    examples = training_examples(world, train_rows, records, codec, tok, p.fresh_people, study.seed)
    block_size = study.models[model_name].block_size
    longest = max(len(e.prompt) + len(e.target) - 1 for e in examples)
    if longest > block_size:
        raise NextlabError(f"a tool-use trace (a record and a question) takes {longest} tokens, beyond "
                           f"models.{model_name}.block_size={block_size}; raise it")
    if max(len(e.prompt) for e in examples) + p.reply_tokens > block_size:
        log.warning("some prompts with a record leave fewer than agent.reply_tokens=%d tokens to reply; the "
                    "policy drops the oldest observation where a prompt does not fit", p.reply_tokens)

    device = resolve_device(study.device)
    start = time.perf_counter()
    model, _ = load_model(sft_ckpt, device)
    direct, with_tool, curve, policy = train_and_run(model, tok, codec, examples, records, eval_rows, p, study.seed)
    seconds = time.perf_counter() - start

    episodes = pd.DataFrame(episode_rows("no_tool", direct, eval_rows) + episode_rows("tool", with_tool, eval_rows))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "ckpt.pt", model, tokenizer_hash=tok_hash, step=p.steps,
                    train_config=p.model_dump(mode="json") | {"seed": study.seed},
                    extra={"stage": "agent", "model": model_name})
    for name, table in (("episodes", episodes), ("curve", pd.DataFrame(curve))):
        with atomic_path(out / f"{name}.parquet") as tmp:
            table.assign(model=model_name).to_parquet(tmp, index=False)
    metrics = agent_metrics(episodes) | {"examples": len(examples), "train_loss": float(curve[-1]["loss"]),
                                         "truncated_prompts": policy.truncated}
    write_json(out / "metrics.json", metrics)
    write_json(out / "timing.json", {"seconds": seconds})
    write_json(out / "provenance.json", {**provenance(p, study.seed, data_hash_of(data_dir)),
                                         "tokenizer_hash": tok_hash, "checkpoint": str(sft_ckpt)})
    log.info("agent %s: %.1f s; accuracy %.3f with the tool vs %.3f without; %.2f tool calls per question, %.3f "
             "of loops hit the step limit", model_name, seconds, metrics.get("tool_acc", float("nan")),
             metrics.get("no_tool_acc", float("nan")), metrics["tool_tool_calls"],
             metrics["tool_hit_limit"])
    return metrics
