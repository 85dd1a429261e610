"""The sft stage: supervised fine-tuning on (prompt, answer) pairs, loss on the answer tokens only.

The prompt tokens are context, never targets: the model is taught what to answer, not to write
questions. A batch is right-padded; labels are -100 (ignored) everywhere but the answer tokens.

    >>> examples = [Example(codec.prompt(q), codec.answer(a)) for q, a in pairs]   # doctest: +SKIP
    >>> curve = finetune(model, examples, SFTConfig(steps=100), torch.Generator().manual_seed(0))  # doctest: +SKIP

The stage, top to bottom in this file (`nextlab sft` calls it):

`run(study, Inputs(init, data, tokenizer), out, model=name)`: SFT from the pretrained checkpoint
on the fine-tune split's questions (people with their answers, never-seen names with "I don't
know"). Writes `ckpt.pt`, `curve.csv`, `metrics.json`, `timing.json`, `provenance.json`.

`run_confidence(...)` (`nextlab sft --confidence`), the calibrated scheme's starting point: the
calibrated scheme answers `answer<|confidence|>0.7`, a format the SFT model has never seen. A
second, short SFT from the SFT model teaches it: its targets are the SFT model's *own* greedy
answers to the RL pool's questions followed by its own probability of that answer (answer tokens
and the token that ends them), rounded to one decimal; "I don't know" is followed by 0.0 (an
abstention is never right). No gold answer enters these targets, so the RL pool's answers stay
unseen. The stated confidence starts as a copy of the model's sequence probability, and the RLCR
reward then moves it toward the actual chance of being right. It runs once per model (not per
seed): with fewer steps the format was fragile under sampling (the marker came out as a stray
byte at temperature 0.7). It also writes `heldout.parquet`, its greedy answers to the
calibration split, for the evaluation layer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from nextlab.config import Study
from nextlab.config.posttrain import SFTParams
from nextlab.errors import NextlabError
from nextlab.generate import EOS_ID, PAD_ID, generate, pad
from nextlab.io import atomic_path, json_safe, write_json
from nextlab.model import GPT
from nextlab.model.checkpoint import model_from_checkpoint, save_checkpoint
from nextlab.model.device import resolve_device
from nextlab.model.gpt import IGNORE_INDEX
from nextlab.progress import bar as progress_bar
from nextlab.provenance import provenance
from nextlab.qa.answers import greedy_answers
from nextlab.qa.codec import QACodec, answer_end
from nextlab.qa.grading import is_abstention
from nextlab.qa.inputs import checked_checkpoint, read_qa, require_split, tokenizer_and_hash
from nextlab.tokenizer.bpe import CONFIDENCE_ID
from nextlab.train.schedule import lr_at

IGNORE = IGNORE_INDEX  # label of a token that is context, not target


@dataclass(frozen=True)
class Example:
    prompt: list[int]
    target: list[int]  # the answer's tokens, ending with <|eos|>


_SFT = SFTParams()  # the schema's defaults: one source for them


@dataclass(frozen=True)
class SFTConfig:
    """One fine-tuning run's settings; unset fields take params `sft:`'s defaults."""

    steps: int = _SFT.steps
    batch_size: int = _SFT.batch_size
    lr: float = _SFT.lr
    warmup_steps: int = _SFT.warmup_steps
    min_lr_ratio: float = 0.1  # not a param: every fine-tune decays to a tenth of its peak lr
    weight_decay: float = _SFT.weight_decay
    grad_clip: float = _SFT.grad_clip


def collate(examples: list[Example], pad_id: int = PAD_ID) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (B, W) and labels (B, W): label[t] is the token at t + 1 if it belongs to the answer.

    >>> idx, labels = collate([Example([0, 3, 9, 4], [20, 21, 1])])
    >>> idx.tolist(), labels.tolist()
    ([[0, 3, 9, 4, 20, 21]], [[-100, -100, -100, 20, 21, 1]])
    """
    idx, _ = pad([e.prompt + e.target[:-1] for e in examples], pad_id)
    # The last prompt token predicts the first answer token; the rows have the same lengths as idx's.
    labels, _ = pad([[IGNORE] * (len(e.prompt) - 1) + e.target for e in examples], IGNORE)
    return idx, labels


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Indices in shuffled epochs; a batch never repeats an example."""
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        for start in range(0, n - min(batch_size, n) + 1, min(batch_size, n)):
            yield order[start : start + batch_size]


def _weighted_batches(weights: Sequence[float], batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Batches drawn with replacement in proportion to `weights` (a weighted loss, in expectation).

    >>> batches = _weighted_batches([0.0, 1.0, 0.0], 5, torch.Generator().manual_seed(0))
    >>> next(batches)
    [1, 1, 1, 1, 1]
    """
    w = torch.tensor(list(weights), dtype=torch.float64)
    while True:
        yield torch.multinomial(w, batch_size, replacement=True, generator=generator).tolist()


def finetune(
    model: GPT,
    examples: list[Example],
    cfg: SFTConfig,
    generator: torch.Generator,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    weights: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """Train `model` in place for `cfg.steps` AdamW steps; return the curve (step, lr, loss).

    Without `weights` batches walk shuffled epochs; with them each batch is drawn in proportion to
    the examples' weights (non-negative, one per example)."""
    if not examples:
        raise NextlabError("supervised fine-tuning got no examples")
    if weights is not None and (len(weights) != len(examples) or min(weights) < 0 or sum(weights) <= 0):
        raise NextlabError(f"fine-tuning weights: need {len(examples)} non-negative weights with a positive sum")
    block = model.config.block_size
    longest = max(len(e.prompt) + len(e.target) - 1 for e in examples)
    if longest > block:
        raise NextlabError(f"a fine-tuning example of {longest} tokens does not fit block_size={block}")
    device = next(model.parameters()).device
    optimizer = model.configure_optimizer(cfg.lr, cfg.weight_decay, betas=(0.9, 0.95))
    batches = (_batches(len(examples), cfg.batch_size, generator) if weights is None
               else _weighted_batches(weights, cfg.batch_size, generator))
    curve: list[dict[str, Any]] = []
    model.train()
    bar = progress_bar(cfg.steps, "step", "fine-tuning")
    for step in range(cfg.steps):
        lr = lr_at(step, cfg.lr, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx, labels = collate([examples[i] for i in next(batches)])
        loss = model(idx.to(device), labels.to(device))  # mean cross-entropy over answer tokens
        if not math.isfinite(loss.item()):
            raise NextlabError(f"fine-tuning diverged: loss {loss.item()} at step {step + 1}; lower the lr ({cfg.lr})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        row = {"step": step + 1, "lr": lr, "loss": loss.item()}
        curve.append(row)
        bar.update(1)
        if on_step is not None:
            on_step(row)
    bar.close()
    model.eval()
    return curve


@torch.no_grad()
def mean_answer_loss(model: GPT, examples: list[Example], batch_size: int = 64) -> float:
    """Cross-entropy per answer token over all `examples` (no training)."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    for start in range(0, len(examples), batch_size):
        idx, labels = collate(examples[start : start + batch_size])
        labels = labels.to(device)
        total += model.loss(model(idx.to(device)), labels, reduction="sum").item()
        count += int((labels != IGNORE).sum())
    return total / max(count, 1)


# ---- the stage --------------------------------------------------------------------------------

FINAL_WINDOW = 5  # steps averaged for the final figures of a run


@dataclass(frozen=True)
class Inputs:
    """The files an SFT job reads."""

    init: Path  # the checkpoint it starts from: pretrain/ckpt.pt (sft), sft/ckpt.pt (confidence)
    data: Path  # the data stage's folder (qa.parquet)
    tokenizer: Path  # the tokenize stage's folder


def start_from(study: Study, model_name: str, ckpt_path: str | Path, tokenizer_dir: str | Path,
               stage: str) -> tuple[dict[str, Any], Any, str, QACodec, GPT, torch.device]:
    """The checkpoint a job starts from, checked against the study and tokenizer, as a model on
    the study's device, with the tokenizer, its hash and the QA codec."""
    tok, tok_hash = tokenizer_and_hash(tokenizer_dir)
    ckpt = checked_checkpoint(ckpt_path, study, model_name, tok_hash, tok.get_vocab_size(), stage=stage)
    device = resolve_device(study.device)
    return ckpt, tok, tok_hash, QACodec(tok), model_from_checkpoint(ckpt, device), device


def sft_examples(codec: QACodec, rows: pd.DataFrame) -> list[Example]:
    return [Example(codec.prompt(q), codec.answer(a)) for q, a in zip(rows["question"], rows["answer"])]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def _write_finetuned(out_dir: str | Path, model: GPT, tok_hash: str, steps: int, params: Any, seed: int,
                     stage: str, model_name: str, curve: list[dict[str, Any]], metrics: dict[str, Any],
                     seconds: float) -> None:
    """`ckpt.pt`, `curve.csv`, `metrics.json`, `timing.json` and `provenance.json` of a fine-tuning job."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "ckpt.pt", model, tokenizer_hash=tok_hash, step=steps,
                    train_config=params.model_dump(mode="json") | {"seed": seed},
                    extra={"stage": stage, "model": model_name})
    write_csv(out / "curve.csv", curve)
    write_json(out / "metrics.json", json_safe(metrics))
    write_json(out / "timing.json", {"seconds": seconds})
    write_json(out / "provenance.json", provenance(params, seed, tok_hash))


def run(
    study: Study,
    inputs: Inputs,
    out: str | Path,
    *,
    model: str,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """SFT `model` from the pretrained checkpoint; write `ckpt.pt`, `curve.csv`, `metrics.json` into
    `out`; return the metrics."""
    qa_path = Path(inputs.data) / "qa.parquet"
    qa = read_qa(qa_path)
    train_rows = require_split(qa, "finetune", qa_path)
    held_rows = require_split(qa, "calibration", qa_path)
    _, _, tok_hash, codec, net, _ = start_from(study, model, inputs.init, inputs.tokenizer, "pretrain")
    examples = sft_examples(codec, train_rows)
    # Held-out answer loss on the calibration split's seen people: what SFT does to unseen questions.
    held = sft_examples(codec, held_rows[held_rows["seen"]])
    held_before = mean_answer_loss(net, held)
    p = study.sft
    cfg = SFTConfig(steps=p.steps, batch_size=p.batch_size, lr=p.lr, warmup_steps=p.warmup_steps,
                    weight_decay=p.weight_decay, grad_clip=p.grad_clip)
    start = time.perf_counter()
    curve = finetune(net, examples, cfg, torch.Generator().manual_seed(study.seed + 11), on_step)
    seconds = time.perf_counter() - start
    held_after = mean_answer_loss(net, held)
    tail = curve[-min(FINAL_WINDOW, len(curve)):]
    metrics = {
        "examples": len(examples),
        "steps": p.steps,
        "train_loss": float(np.mean([r["loss"] for r in tail])),
        "heldout_answer_loss_before": held_before,
        "heldout_answer_loss_after": held_after,
    }
    _write_finetuned(out, net, tok_hash, p.steps, p, study.seed, "sft", model, curve, metrics, seconds)
    return metrics


@torch.no_grad()
def own_confidence_examples(
    model: torch.nn.Module, codec: QACodec, questions: list[str], max_new_tokens: int, batch_size: int = 64
) -> list[Example]:
    """Confidence-SFT targets: the model's greedy answer, then `<|confidence|>` and the model's
    probability of that answer (answer tokens + the token that ends it) to one decimal; 0.0 after
    "I don't know". An answer that never ended is kept as far as it went, with its (small)
    probability, so even a barely trained model learns where the confidence goes."""
    examples = []
    for start in range(0, len(questions), batch_size):
        prompts = [codec.prompt(q) for q in questions[start : start + batch_size]]
        out = generate(model, prompts, max_new_tokens, temperature=0.0, eos_id=EOS_ID)
        for i, prompt in enumerate(prompts):
            decoded = codec.decode(out.tokens[i])
            end = answer_end(out.tokens[i])
            confidence = 0.0 if is_abstention(decoded.answer) else math.exp(sum(out.logprobs[i][:end]))
            examples.append(Example(prompt, codec.answer(decoded.answer, confidence=confidence)))
    return examples


def run_confidence(
    study: Study,
    inputs: Inputs,
    out: str | Path,
    *,
    model: str,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The calibrated scheme's start, from the SFT checkpoint: write `ckpt.pt`, `curve.csv`,
    `metrics.json` and `heldout.parquet` into `out`; return the metrics."""
    qa_path = Path(inputs.data) / "qa.parquet"
    qa = read_qa(qa_path)
    # The RL pool only: on the fine-tune split's memorised questions every answer would be stated
    # 1.0 and the model would learn nothing but "1.0" (seen in a trial).
    pool = require_split(qa, "rl", qa_path)
    held_rows = require_split(qa, "calibration", qa_path)
    _, tok, tok_hash, codec, net, _ = start_from(study, model, inputs.init, inputs.tokenizer, "sft")
    p, pt = study.sft, study.posttrain

    start = time.perf_counter()
    examples = own_confidence_examples(net, codec, pool["question"].tolist(), pt.max_answer_tokens)
    cfg = SFTConfig(steps=p.confidence_steps, batch_size=p.batch_size, lr=p.confidence_lr,
                    warmup_steps=min(p.warmup_steps, p.confidence_steps), weight_decay=p.weight_decay,
                    grad_clip=p.grad_clip)
    curve = finetune(net, examples, cfg, torch.Generator().manual_seed(study.seed + 13), on_step)
    seconds = time.perf_counter() - start
    # Did the format take, and does the stated confidence mean anything yet? Greedy answers to the
    # calibration split's questions: the starting point the calibrated scheme's results build on.
    held = greedy_answers(net, codec, held_rows["question"].tolist(), held_rows["answer"].tolist(),
                          pt.max_answer_tokens)
    tail = curve[-min(FINAL_WINDOW, len(curve)):]
    metrics = {
        "examples": len(examples),
        "steps": p.confidence_steps,
        "train_loss": float(np.mean([r["loss"] for r in tail])),
        "mean_target_confidence": float(np.mean([
            float(tok.decode(e.target[e.target.index(CONFIDENCE_ID) + 1 : -1])) for e in examples])),
        "heldout_accuracy": float((held["grade"] == "correct").mean()),
        "heldout_abstention": float((held["grade"] == "abstain").mean()),
        "stated_format_rate": float(held["stated_confidence"].notna().mean()),
    }
    # The answers themselves, for calibration metrics where they belong (the evaluation layer):
    # this stage stays free of them, so editing a metric reruns evaluation, not post-training.
    Path(out).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(out) / "heldout.parquet") as tmp:
        held.assign(question_id=held_rows["question_id"].to_numpy()).to_parquet(tmp, index=False)
    _write_finetuned(out, net, tok_hash, p.confidence_steps, p, study.seed, "sft_confidence", model,
                     curve, metrics, seconds)
    return metrics
