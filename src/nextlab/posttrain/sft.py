"""Supervised fine-tuning on (prompt, answer) pairs, with the loss on the answer tokens only.

The prompt tokens are context, never targets: the model is taught what to answer, not to write
questions. A batch is right-padded; labels are -100 (ignored) everywhere but the answer tokens.

    >>> examples = [Example(codec.prompt(q), codec.answer(a)) for q, a in pairs]   # doctest: +SKIP
    >>> curve = finetune(model, examples, SFTConfig(steps=100), torch.Generator().manual_seed(0))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nextlab.errors import NextlabError
from nextlab.generate import PAD_ID, pad
from nextlab.model.gpt import GPT, IGNORE_INDEX
from nextlab.progress import bar as progress_bar
from nextlab.train.schedule import lr_at

IGNORE = IGNORE_INDEX  # label of a token that is context, not target


@dataclass(frozen=True)
class Example:
    prompt: list[int]
    target: list[int]  # the answer's tokens, ending with <|eos|>


@dataclass(frozen=True)
class SFTConfig:
    steps: int = 150
    batch_size: int = 32
    lr: float = 5e-4
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0


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
