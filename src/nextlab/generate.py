"""Decoding and scoring with a trained GPT: sampling, a KV cache, batched prompts, log-probabilities.

Two entry points:

* `generate` continues a batch of prompts (lists of token ids, any lengths) by greedy decoding
  (temperature 0) or sampling (temperature, top-k, top-p), stopping at `eos_id` or after
  `max_new_tokens`. Prompts are left-padded into one batch with an attention mask; the model
  derives positions from the mask, so each prompt decodes as if it were alone.
* `score` / `token_logprobs` give the log-probability of given continuations after given prompts
  (teacher forcing, one batched forward pass), e.g. log P(answer | question) for evaluation.

Beneath them, `pad` (token id lists -> one padded batch and its mask) and `Decoder` (prefill once,
then one token per row per step through the KV cache) are the building blocks every decoding and
teacher-forcing caller shares.

Worked example (an untrained model, so the tokens are arbitrary)::

    >>> from nextlab.model import GPT, GPTConfig
    >>> model = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=1, n_head=2, d_model=16))
    >>> out = generate(model, [[0, 7, 9], [0, 5]], max_new_tokens=4, temperature=0.0, eos_id=1)
    >>> len(out.tokens), len(out.tokens[0]) <= 4, len(out.logprobs[0]) == len(out.tokens[0])
    (2, True, True)
    >>> lp = score(model, [[0, 7], [0, 7]], [[9, 1], [12, 1]])   # log P(9 <eos> | 0 7), ...
    >>> len(lp), lp[0] < 0
    (2, True)

All log-probabilities are the model's own (softmax of the raw logits at temperature 1, before any
top-k/top-p filtering), so they measure what the model believes, not how it was sampled.
The caller picks precision: wrap calls in `torch.autocast` for bf16 on a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from nextlab.tokenizer import EOS_ID, PAD_ID

__all__ = ["EOS_ID", "PAD_ID", "Decoder", "Generation", "filter_logits", "generate", "pad", "score", "token_logprobs"]


@dataclass
class Generation:
    """What `generate` returns, one entry per prompt, in prompt order.

    tokens: the new token ids; the final `eos_id` is included when the model emitted it.
    logprobs: log P(token | everything before it) under the model, aligned with `tokens`.
    finished: True where the model emitted `eos_id` (False: it hit `max_new_tokens`).
    """

    tokens: list[list[int]]
    logprobs: list[list[float]]
    finished: list[bool]

    def completion(self, i: int) -> list[int]:
        """Prompt i's new tokens without the trailing end-of-text."""
        toks = self.tokens[i]
        return toks[:-1] if self.finished[i] else toks

    def total_logprob(self, i: int) -> float:
        return float(sum(self.logprobs[i]))


def pad(
    seqs: Sequence[Sequence[int]], pad_id: int = PAD_ID, *, left: bool = False, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists as one batch: ids (B, longest) padded with `pad_id` on the right (`left`: on
    the left), and the mask (B, longest), 1 at real tokens, both long and on `device`.

    Right padding suits teacher forcing (a causal model's real tokens never see the padding after
    them); left padding suits decoding (every row's next token goes in the same column).

    >>> idx, mask = pad([[5, 6, 7], [8]], pad_id=2)
    >>> idx.tolist(), mask.tolist()
    ([[5, 6, 7], [8, 2, 2]], [[1, 1, 1], [1, 0, 0]])
    >>> pad([[5, 6, 7], [8]], pad_id=2, left=True)[0].tolist()
    [[5, 6, 7], [2, 2, 8]]
    """
    width = max((len(s) for s in seqs), default=0)
    idx = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        if seq:
            cols = slice(width - len(seq), width) if left else slice(0, len(seq))
            idx[row, cols] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, cols] = 1
    return idx.to(device), mask.to(device)


class Decoder:
    """A batch decoded token by token: `prefill` runs the prompts once and returns their logits
    (B, T, vocab); then every `step` feeds one token per row through the KV cache and returns the
    logits (B, vocab) that predict the next one. The attention mask grows by a column per step: 1
    where a row's token is real, 0 where the row is done and fed padding. With no mask (every row
    real, all of one length) none is kept. `use_cache=False` recomputes the whole batch every
    step, to check the cache against.

    The one decoding core of `generate`, on-policy sampling and the nondeterminism study's
    `decode_batch`; what each feeds (sampled, greedy or forced tokens) is theirs.
    """

    def __init__(self, model: torch.nn.Module, use_cache: bool = True):
        self.model, self.use_cache = model, use_cache
        self.idx: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None
        self.past = None

    def prefill(self, idx: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Start over from the prompts `idx` (B, T) with their `mask` (None: all real)."""
        self.idx, self.mask = idx, mask
        if not self.use_cache:
            return self.model(idx, attention_mask=mask)
        logits, self.past = self.model(idx, attention_mask=mask, use_cache=True)
        return logits

    def step(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Feed `tokens` (B,); `real` (B,) bool marks the rows whose token is not padding."""
        if self.mask is not None:
            self.mask = torch.cat([self.mask, real.long()[:, None]], dim=1)
        if self.use_cache:
            logits, self.past = self.model(tokens[:, None], attention_mask=self.mask, past_kv=self.past,
                                           use_cache=True)
        else:
            self.idx = torch.cat([self.idx, tokens[:, None]], dim=1)
            logits = self.model(self.idx, attention_mask=self.mask)
        return logits[:, -1]


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set logits outside the top-k and outside the top-p nucleus to -inf (rows are independent).

    top-p keeps the smallest set of most likely tokens whose probability reaches `top_p`; the most
    likely token is always kept.
    """
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = F.softmax(sorted_logits, dim=-1).cumsum(-1)
        # Drop a token when the tokens before it already reach top_p.
        drop_sorted = (cum - F.softmax(sorted_logits, dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_ids(seqs: list[list[int]], vocab_size: int, what: str) -> None:
    for i, seq in enumerate(seqs):
        for t in seq:
            if not 0 <= t < vocab_size:
                raise ValueError(f"{what}[{i}] holds token id {t}, outside the vocabulary (0..{vocab_size - 1})")


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = EOS_ID,
    pad_id: int = PAD_ID,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Generation:
    """Continue every prompt; greedy when `temperature == 0`, else sample from softmax(logits / T).

    Generation stops for a prompt at `eos_id` (None: never) and for all at `max_new_tokens`, which
    is shortened so that the longest prompt plus its new tokens fit in the model's block size.
    `generator` (on the model's device) makes sampling reproducible.
    """
    if not prompts:
        return Generation([], [], [])
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (start it with <|bos|>)")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    block_size = model.config.block_size
    _check_ids(prompts, model.config.vocab_size, "prompts")
    longest = max(len(p) for p in prompts)
    if longest > block_size:
        raise ValueError(f"a prompt of {longest} tokens does not fit block_size={block_size}")
    max_new_tokens = min(max_new_tokens, block_size - longest)

    was_training = model.training
    model.eval()
    device = _model_device(model)
    idx, mask = pad(prompts, pad_id, left=True, device=device)
    B = idx.size(0)
    tokens: list[list[int]] = [[] for _ in range(B)]
    logprobs: list[list[float]] = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=device)
    decoder = Decoder(model, use_cache)
    last = decoder.prefill(idx, mask)[:, -1] if max_new_tokens > 0 else None
    for step in range(max_new_tokens):
        logits = last.float()
        logp = F.log_softmax(logits, dim=-1)
        if temperature == 0:
            next_tok = logits.argmax(dim=-1)
        else:
            probs = F.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
            next_tok = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        chosen_logp = logp.gather(1, next_tok[:, None]).squeeze(1)
        # Finished rows keep decoding padding (never read) so the batch stays rectangular.
        next_tok = torch.where(done, torch.full_like(next_tok, pad_id), next_tok)
        for row, (t, lp, d) in enumerate(zip(next_tok.tolist(), chosen_logp.tolist(), done.tolist())):
            if not d:
                tokens[row].append(t)
                logprobs[row].append(lp)
        # The token just chosen is real for rows that were still running, padding for the rest.
        real = ~done
        if eos_id is not None:
            done = done | (next_tok == eos_id)
        if bool(done.all()) or step + 1 == max_new_tokens:
            break
        last = decoder.step(next_tok, real)
    model.train(was_training)
    finished = [bool(toks) and eos_id is not None and toks[-1] == eos_id for toks in tokens]
    return Generation(tokens, logprobs, finished)


@torch.no_grad()
def token_logprobs(
    model: torch.nn.Module,
    prompts: list[list[int]],
    continuations: list[list[int]],
    batch_size: int = 64,
    pad_id: int = PAD_ID,
) -> list[list[float]]:
    """log P(continuation[j] | prompt, continuation[:j]) for every token of every continuation.

    Pairs are scored in batches of `batch_size`, right-padded: causal attention means a real token
    never sees the padding after it, so no mask is needed and positions are the plain ones (a
    non-causal model gets a padding mask instead).
    """
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (start it with <|bos|>)")
    _check_ids(prompts, model.config.vocab_size, "prompts")
    _check_ids(continuations, model.config.vocab_size, "continuations")
    block_size = model.config.block_size
    was_training = model.training
    model.eval()
    device = _model_device(model)
    out: list[list[float]] = []
    for start in range(0, len(prompts), batch_size):
        pairs = list(zip(prompts[start : start + batch_size], continuations[start : start + batch_size]))
        # The last continuation token is only a target, never an input.
        inputs = [p + c[:-1] for p, c in pairs]
        width = max(len(s) for s in inputs)
        if width > block_size:
            raise ValueError(f"a prompt plus continuation of {width + 1} tokens does not fit block_size={block_size}")
        idx, real = pad(inputs, pad_id, device=device)
        mask = None if getattr(model.config, "causal", True) else real
        logp = F.log_softmax(model(idx, attention_mask=mask).float(), dim=-1)
        for row, (p, c) in enumerate(pairs):
            if not c:
                out.append([])
                continue
            # Logits at position t predict token t + 1: the continuation starts at len(p).
            pos = torch.arange(len(p) - 1, len(p) - 1 + len(c), device=device)
            target = torch.tensor(c, dtype=torch.long, device=device)
            out.append(logp[row, pos, target].tolist())
    model.train(was_training)
    return out


def score(
    model: torch.nn.Module,
    prompts: list[list[int]],
    continuations: list[list[int]],
    batch_size: int = 64,
    pad_id: int = PAD_ID,
) -> list[float]:
    """Summed log P(continuation | prompt) per pair, e.g. log P(answer + <|eos|> | question).

    For a distribution over candidate answers, score each candidate after the same prompt and
    normalise: `torch.tensor(score(model, [q] * n, candidates)).softmax(0)`.
    """
    return [float(sum(lp)) for lp in token_logprobs(model, prompts, continuations, batch_size, pad_id)]
