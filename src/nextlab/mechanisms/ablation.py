"""Which parts of the model does fact recall depend on? Ablate one component at a time.

A component is one layer's MLP (`mlp.<layer>`) or one attention head (`head.<layer>.<head>`).
Ablating it replaces its output with its mean over the real tokens of the clean run (mean
ablation: the rest of the network still receives a typical input, which zeros are not) or with
zeros. Measured teacher forced on held-out biographies, never trained on: a fact is recalled when
every token of its value is the greedy prediction, and the cross-entropy of every other token
says whether the component serves language in general or the facts in particular.

    >>> model = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, d_model=16))
    >>> components(model)
    ['mlp.0', 'head.0.0', 'head.0.1', 'mlp.1', 'head.1.0', 'head.1.1']
    >>> idx = torch.tensor([[0, 5, 9, 3, 7]])
    >>> clean = model(idx)
    >>> with ablated(model, "mlp.1", None):     # zeros in place of layer 1's MLP
    ...     torch.equal(model(idx), clean)
    False
    >>> torch.equal(model(idx), clean)          # the hook is gone afterwards
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nextlab.generate import pad
from nextlab.model import GPT, GPTConfig  # noqa: F401  (the docstring's example)
from nextlab.tokenizer import BOS_ID


def components(model: GPT) -> list[str]:
    """Every ablatable component, layer by layer: the MLP, then each head."""
    out = []
    for layer in range(model.config.n_layer):
        out.append(f"mlp.{layer}")
        out += [f"head.{layer}.{h}" for h in range(model.config.n_head)]
    return out


def parse(component: str) -> tuple[str, int, int | None]:
    """`"head.2.1"` -> ("head", 2, 1); `"mlp.0"` -> ("mlp", 0, None).

    >>> parse("head.2.1"), parse("mlp.0")
    (('head', 2, 1), ('mlp', 0, None))
    """
    parts = component.split(".")
    if parts[0] == "mlp" and len(parts) == 2:
        return "mlp", int(parts[1]), None
    if parts[0] == "head" and len(parts) == 3:
        return "head", int(parts[1]), int(parts[2])
    raise ValueError(f"unknown component {component!r}; expected mlp.<layer> or head.<layer>.<head>")


@contextlib.contextmanager
def ablated(model: GPT, component: str, mean: torch.Tensor | None) -> Iterator[None]:
    """Run the model with `component`'s output replaced by `mean` (None: zeros), then restore it.

    An MLP's output is its block's residual update; a head's output is its slice of the input to
    the attention's output projection, so the projection (and its bias) still runs.
    """
    kind, layer, head = parse(component)
    block = model.blocks[layer]
    if kind == "mlp":
        def replace_output(module: Any, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(output) if mean is None else mean.to(output.dtype).expand_as(output)

        handle = block.mlp.register_forward_hook(replace_output)
    else:
        size = model.config.head_size
        cols = slice(head * size, (head + 1) * size)

        def replace_head(module: Any, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            y = inputs[0].clone()
            y[..., cols] = 0.0 if mean is None else mean.to(y.dtype)
            return (y, *inputs[1:])

        handle = block.attn.c_proj.register_forward_pre_hook(replace_head)
    try:
        yield
    finally:
        handle.remove()


@dataclass
class Facts:
    """Held-out biographies as one right-padded batch, and where each fact's value sits in it."""

    idx: torch.Tensor  # (docs, T) token ids, bos first
    real: torch.Tensor  # (docs, T) True at real tokens
    fact_doc: np.ndarray  # (facts,) the document of each fact
    fact_positions: list[list[int]]  # the value's token positions (each predicted from the one before)
    fact_mentions: np.ndarray  # (facts,) mention count of the fact's person
    fact_attribute: list[str]
    value_token: torch.Tensor  # (docs, T) True where a token belongs to some fact's value


def build_facts(tokenizer: Any, docs: list[dict[str, Any]], mentions: dict[str, int], block_size: int) -> Facts:
    """The `kind == "bio"` documents of seen people, with their value spans as token positions."""
    from nextlab.train.facts import value_token_positions

    bios = [d for d in docs if d.get("kind") == "bio" and d.get("spans") and d.get("person") in mentions]
    encodings = tokenizer.encode_batch([d["text"] for d in bios], add_special_tokens=False)
    seqs = [[BOS_ID, *enc.ids][:block_size] for enc in encodings]
    # Right padding: a causal model's real queries never read it.
    idx, real = pad(seqs)
    real = real.bool()
    value_token = torch.zeros(idx.shape, dtype=torch.bool)
    doc_of, positions_of, mentions_of, attribute_of = [], [], [], []
    for r, (doc, enc, seq) in enumerate(zip(bios, encodings, seqs)):
        for attribute, a, b in doc["spans"]:
            positions = [p + 1 for p in value_token_positions(enc.offsets, a, b)]  # +1: the bos
            if not positions or positions[-1] >= len(seq):
                continue  # the value fell beyond the context window
            value_token[r, positions] = True
            doc_of.append(r)
            positions_of.append(positions)
            mentions_of.append(mentions[doc["person"]])
            attribute_of.append(attribute)
    return Facts(idx, real, np.array(doc_of, int), positions_of, np.array(mentions_of, int), attribute_of, value_token)


@dataclass
class Measured:
    recalled: np.ndarray  # (facts,) bool
    other_loss_sum: np.ndarray  # (docs,) summed cross-entropy of the tokens outside any value
    other_tokens: np.ndarray  # (docs,) how many such tokens


@torch.no_grad()
def measure(model: GPT, facts: Facts, batch_size: int = 64) -> Measured:
    """Fact recall and the loss on non-fact tokens, teacher forced, in the model's current state."""
    device = next(model.parameters()).device
    recalled = np.zeros(len(facts.fact_doc), bool)
    loss_sum = np.zeros(len(facts.idx))
    counts = np.zeros(len(facts.idx))
    by_doc: dict[int, list[int]] = {}
    for f, d in enumerate(facts.fact_doc):
        by_doc.setdefault(int(d), []).append(f)
    for start in range(0, len(facts.idx), batch_size):
        idx = facts.idx[start : start + batch_size].to(device)
        logits = model(idx).float()
        predicted = logits.argmax(-1).cpu()
        ce = model.loss(logits[:, :-1], idx[:, 1:], reduction="none").cpu()
        other = (facts.real[start : start + batch_size, 1:] & ~facts.value_token[start : start + batch_size, 1:])
        loss_sum[start : start + len(idx)] = (ce * other).sum(1).double().numpy()
        counts[start : start + len(idx)] = other.sum(1).numpy()
        for r in range(len(idx)):
            for f in by_doc.get(start + r, []):
                row = facts.idx[start + r]
                recalled[f] = all(int(predicted[r, p - 1]) == int(row[p]) for p in facts.fact_positions[f])
    return Measured(recalled, loss_sum, counts)


@torch.no_grad()
def mean_outputs(model: GPT, facts: Facts, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Each component's mean output over the real tokens of the clean run."""
    size = model.config.head_size
    sums: dict[str, torch.Tensor] = {}
    total = 0
    handles = []
    current: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module: Any, inputs: Any, output: Any = None) -> None:
            current[name] = (output if output is not None else inputs[0]).float()

        return hook

    for layer, block in enumerate(model.blocks):
        handles.append(block.mlp.register_forward_hook(keep(f"mlp.{layer}")))
        handles.append(block.attn.c_proj.register_forward_pre_hook(keep(f"attn.{layer}")))
    device = next(model.parameters()).device
    try:
        for start in range(0, len(facts.idx), batch_size):
            idx = facts.idx[start : start + batch_size].to(device)
            real = facts.real[start : start + batch_size].to(device)
            model(idx)
            total += int(real.sum())
            for name, value in current.items():
                summed = value[real].sum(0).cpu()
                sums[name] = sums[name] + summed if name in sums else summed
    finally:
        for handle in handles:
            handle.remove()
    means = {}
    for layer in range(model.config.n_layer):
        means[f"mlp.{layer}"] = sums[f"mlp.{layer}"] / max(total, 1)
        attn = sums[f"attn.{layer}"] / max(total, 1)
        for h in range(model.config.n_head):
            means[f"head.{layer}.{h}"] = attn[h * size : (h + 1) * size]
    return {name: value.to(device) for name, value in means.items()}


def paired_difference(after: np.ndarray, before: np.ndarray, weights: np.ndarray | None, samples: int,
                      seed: int) -> tuple[float, float, float]:
    """(point, lo, hi) of mean(after) - mean(before) over the same items, bootstrapped over items
    (`weights`: each item's weight, e.g. its token count, with after/before as per-item means).

    >>> paired_difference(np.array([0., 0, 1, 1]), np.array([1., 1, 1, 1]), None, 200, 0)[0]
    -0.5
    """
    from nextlab.evaluate.bootstrap import interval, weighted_mean

    n = len(after)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    w = np.ones(n) if weights is None else np.asarray(weights, float)

    def stat(C: np.ndarray) -> np.ndarray:
        return weighted_mean(C, w[None], np.asarray(after, float)[None]) - weighted_mean(
            C, w[None], np.asarray(before, float)[None])

    return interval(stat, 1, n, samples, seed=seed)


def run_ablations(model: GPT, facts: Facts, method: str, samples: int, seed: int) -> list[dict[str, Any]]:
    """One row per component (and the clean model) and fact bucket ("all" and each mention count):
    recall and its change, the other tokens' loss and its change, each change with a paired 95%
    bootstrap interval."""
    clean = measure(model, facts)
    means = mean_outputs(model, facts) if method == "mean" else {}
    buckets = [("all", np.ones(len(facts.fact_doc), bool))] + [
        (str(k), facts.fact_mentions == k) for k in sorted(set(facts.fact_mentions.tolist()))]
    has_other = clean.other_tokens > 0
    clean_other = np.where(has_other, clean.other_loss_sum / np.maximum(clean.other_tokens, 1), 0.0)
    rows = []
    for component in ["none", *components(model)]:
        if component == "none":
            result = clean
        else:
            with ablated(model, component, means.get(component)):
                result = measure(model, facts)
        other = np.where(has_other, result.other_loss_sum / np.maximum(result.other_tokens, 1), 0.0)
        loss_delta = paired_difference(other[has_other], clean_other[has_other], clean.other_tokens[has_other],
                                       samples, seed)
        kind, layer, head = ("none", -1, -1) if component == "none" else parse(component)
        for bucket, chosen in buckets:
            recall_delta = paired_difference(result.recalled[chosen].astype(float),
                                             clean.recalled[chosen].astype(float), None, samples, seed)
            rows.append({
                "component": component, "kind": kind, "layer": layer, "head": -1 if head is None else head,
                "facts": bucket, "n_facts": int(chosen.sum()), "recall": float(result.recalled[chosen].mean()),
                "recall_delta": recall_delta[0], "recall_delta_lo": recall_delta[1],
                "recall_delta_hi": recall_delta[2],
                "other_loss": float(result.other_loss_sum.sum() / max(result.other_tokens.sum(), 1)),
                "other_loss_delta": loss_delta[0], "other_loss_delta_lo": loss_delta[1],
                "other_loss_delta_hi": loss_delta[2],
            })
    return rows
