"""Exactly on-policy post-training: the sampler and the trainer compute the same log-probabilities.

A policy-gradient step computes the answer's log-probabilities twice: while sampling (batched,
token by token with a KV cache, no gradient) and while training (one teacher-forced forward pass
with gradients). The default kernels give the two other bits (other shapes, other sums), so the
step trains on a policy slightly different from the one that sampled. This module

* samples the way `nextlab.generate.generate` does (left padding, KV cache, the same draws from
  the same generator, so the default path's answers are unchanged) and keeps each step's logits;
* scores the answers teacher forced: with the default kernels as the training loss always has,
  or, under `batch_invariant`, through `BatchInvariantGPT` (with gradients), whose logits are the
  same bits in any batch, padding and cache, so sampler and trainer agree exactly;
* measures the mismatch per step: max and mean |log pi_sampler - log pi_trainer| of the sampled
  tokens and the exact sampler-trainer KL over the vocabulary, both at the sampling temperature.

    >>> from nextlab.model import GPT, GPTConfig
    >>> torch.manual_seed(0)
    <torch._C.Generator object at ...>
    >>> model = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, d_model=16))
    >>> prompts = [[0, 5, 6], [0, 7]]
    >>> s = sample(model, prompts, 4, 1.0, eos_id=None, generator=torch.Generator().manual_seed(1),
    ...            batch_invariant=True)
    >>> logits, targets, mask = trainer_logits(model, prompts, s.tokens, batch_invariant=True)
    >>> mismatch(s.logits, logits, mask, temperature=1.0)["sampler_trainer_kl"]
    0.0
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from nextlab.generate import EOS_ID, PAD_ID, Decoder, pad


@dataclass
class Sampled:
    tokens: list[list[int]]  # each answer's tokens, <|eos|> included when sampled
    logits: torch.Tensor  # (N, L, vocab) float: the logits each token was sampled from, 0 past the answer


def _invariant(model: torch.nn.Module) -> torch.nn.Module:
    from nextlab.model.invariant import BatchInvariantGPT

    return model if isinstance(model, BatchInvariantGPT) else BatchInvariantGPT(model)


@torch.no_grad()
def sample(model: torch.nn.Module, prompts: list[list[int]], max_new_tokens: int, temperature: float,
           eos_id: int | None = EOS_ID, pad_id: int = PAD_ID, generator: torch.Generator | None = None,
           batch_invariant: bool = False, banned_first: int | None = None) -> Sampled:
    """Sample answers from softmax(logits / temperature), as `generate` does, keeping the logits.
    With `banned_first` that token is never drawn as an answer's first token (the draw is then
    conditional on the answer not starting with it); the kept logits stay the model's own."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    policy = _invariant(model) if batch_invariant else model
    was_training = model.training
    model.eval()
    max_new_tokens = min(max_new_tokens, model.config.block_size - max(len(p) for p in prompts))
    device = next(model.parameters()).device
    idx, mask = pad(prompts, pad_id, left=True, device=device)
    B = idx.size(0)
    tokens: list[list[int]] = [[] for _ in range(B)]
    kept: list[torch.Tensor] = []
    done = torch.zeros(B, dtype=torch.bool, device=device)
    decoder = Decoder(policy)
    last = decoder.prefill(idx, mask)[:, -1] if max_new_tokens > 0 else None
    for position in range(max_new_tokens):
        logits = last.float()
        kept.append(logits)
        if position == 0 and banned_first is not None:
            logits = logits.index_fill(1, torch.tensor([banned_first], device=device), float("-inf"))
        probs = F.softmax(logits / temperature, dim=-1)
        next_tok = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        next_tok = torch.where(done, torch.full_like(next_tok, pad_id), next_tok)
        for row, (t, d) in enumerate(zip(next_tok.tolist(), done.tolist())):
            if not d:
                tokens[row].append(t)
        real = ~done
        if eos_id is not None:
            done = done | (next_tok == eos_id)
        if bool(done.all()) or position + 1 == max_new_tokens:
            break
        last = decoder.step(next_tok, real)
    model.train(was_training)
    L = max(1, max(len(t) for t in tokens))
    stacked = torch.stack(kept, dim=1) if kept else torch.zeros(B, 0, model.config.vocab_size, device=device)
    out = torch.zeros(B, L, stacked.size(-1), device=device)
    for row, toks in enumerate(tokens):
        out[row, : len(toks)] = stacked[row, : len(toks)]
    return Sampled(tokens, out)


def trainer_logits(model: torch.nn.Module, prompts: list[list[int]], answers: list[list[int]],
                   pad_id: int = PAD_ID, batch_invariant: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (N, L, vocab) float at the positions that predict each answer token, with gradients;
    the answer tokens (N, L) and their mask (N, L). Right-padded; the default kernels need no mask
    (causal attention never lets a real token see the padding after it), the invariant mode gets
    one so that it drops the padding."""
    inputs = [p + a[:-1] for p, a in zip(prompts, answers)]
    device = next(model.parameters()).device
    idx, real = pad(inputs, pad_id, device=device)
    if batch_invariant:
        inv = _invariant(model)
        # BatchInvariantGPT.forward is a no-grad call for decoding; training needs its gradients.
        logits = type(inv).forward.__wrapped__(inv, idx, attention_mask=real)
    else:
        logits = model(idx)
    # Position len(prompt) - 1 + j predicts answer token j.
    pos, _ = pad([range(len(p) - 1, len(p) - 1 + len(a)) for p, a in zip(prompts, answers)], 0, device=device)
    targets, mask = pad(answers, pad_id, device=device)
    mask = mask.bool()
    picked = logits.gather(1, pos[:, :, None].expand(-1, -1, logits.size(-1)))
    return picked.float(), targets, mask


@torch.no_grad()
def mismatch(sampler: torch.Tensor, trainer: torch.Tensor, mask: torch.Tensor, temperature: float,
             targets: torch.Tensor | None = None) -> dict[str, float]:
    """Per step: max and mean |log-prob difference| of the answer tokens (or, without `targets`,
    of every token of the vocabulary) and the exact KL(sampler || trainer) per answer token, all at
    the sampling temperature. Exactly 0.0 when the two logits are the same bits."""
    trainer = trainer.detach()
    if not bool(mask.any()):
        return {"logprob_diff_max": 0.0, "logprob_diff_mean": 0.0, "sampler_trainer_kl": 0.0}
    lp_s = F.log_softmax(sampler / temperature, dim=-1)
    lp_t = F.log_softmax(trainer / temperature, dim=-1)
    if targets is not None:
        diff = (lp_s.gather(-1, targets[..., None]) - lp_t.gather(-1, targets[..., None])).squeeze(-1).abs()
    else:
        diff = (lp_s - lp_t).abs().amax(dim=-1)
    kl = (lp_s.exp() * (lp_s - lp_t)).sum(-1)
    return {"logprob_diff_max": float(diff[mask].max()), "logprob_diff_mean": float(diff[mask].mean()),
            "sampler_trainer_kl": float(kl[mask].mean())}
