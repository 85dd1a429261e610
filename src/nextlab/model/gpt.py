"""A decoder-only transformer (GPT) in plain PyTorch, nanoGPT-style.

Token embedding -> positional information (learned, rotary or none) -> `n_layer` pre-norm blocks
of causal multi-head self-attention and a GELU MLP -> final norm -> output projection tied to the
token embedding. `causal=False` (with `positional="none"`: the order-blind control of the
positions stage) lets every position attend to every other, so nothing in the model tells order;
such a model scores whole sequences and cannot decode token by token.

Worked example::

    >>> cfg = GPTConfig(vocab_size=512, block_size=32, n_layer=2, n_head=2, d_model=32)
    >>> model = GPT(cfg)
    >>> idx = torch.randint(0, 512, (3, 10))
    >>> model(idx).shape                     # logits for every position
    torch.Size([3, 10, 512])
    >>> logits, past = model(idx, use_cache=True)
    >>> len(past), past[0][0].shape          # one (k, v) pair per layer: (B, heads, T, head size)
    (2, torch.Size([3, 2, 10, 16]))
    >>> loss = model(idx[:, :-1], targets=idx[:, 1:])  # with targets: the mean cross-entropy
    >>> loss.shape, abs(loss.item() - math.log(512)) < 0.5   # about ln(vocab) at initialisation
    (torch.Size([]), True)
    >>> [len(g["params"]) for g in model.configure_optimizer(lr=1e-3, weight_decay=0.1).param_groups]
    [10, 5]

Left padding: `attention_mask` (B, T_past + T) is 1 for real tokens and 0 for padding. Positions
are counted over real tokens only (`cumsum(mask) - 1`), and no query attends to a padded key, so a
left-padded prompt gets the same logits as the prompt alone (up to float rounding).

Every numeric kernel sits in one small method so a later variant (e.g. a batch-invariant mode)
can replace it: `_attention` (SDPA or explicit softmax(QK^T/sqrt(d))V), `LayerNorm.forward`,
`GPT._logits` (the tied output projection).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
import torch.nn as nn
from torch.nn import functional as F

from nextlab.model.rotary import apply_rotary, rotary_tables

# One layer's cache: keys and values of every position seen so far, each (B, n_head, T, head_size).
LayerCache = tuple[torch.Tensor, torch.Tensor]
KVCache = list[LayerCache]
# Targets equal to this are not predicted (prompt tokens in SFT, the end of a shifted row).
IGNORE_INDEX = -100


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a model. `vocab_size` comes from the tokenizer, the rest from params `models:`."""

    vocab_size: int
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    positional: Literal["learned", "rotary", "none"] = "learned"
    attention: Literal["sdpa", "explicit"] = "sdpa"
    mlp_ratio: int = 4
    dropout: float = 0.0
    bias: bool = False
    causal: bool = True

    def __post_init__(self) -> None:
        # Params validation catches these first; this guards direct library use.
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if self.positional not in ("learned", "rotary", "none"):
            raise ValueError(f"positional={self.positional!r}; allowed: learned, rotary, none")
        if self.attention not in ("sdpa", "explicit"):
            raise ValueError(f"attention={self.attention!r}; allowed: sdpa, explicit")
        if self.positional == "rotary" and self.head_size % 2:
            raise ValueError(f"rotary positions need an even head size, got {self.head_size}")

    @property
    def head_size(self) -> int:
        return self.d_model // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GPTConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_params(cls, params: Any, vocab_size: int) -> "GPTConfig":
        """From a `nextlab.config.ModelParams` (or any object with the same fields)."""
        dump = params.model_dump() if hasattr(params, "model_dump") else dict(params)
        return cls(vocab_size=vocab_size, **dump)


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's cannot drop only the bias)."""

    def __init__(self, dim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.head_size = config.head_size
        self.path = config.attention
        self.causal = config.causal
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.c_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None,
        past: LayerCache | None,
    ) -> tuple[torch.Tensor, LayerCache]:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, heads, T, head_size)
        q, k, v = (t.view(B, T, self.n_head, self.head_size).transpose(1, 2) for t in (q, k, v))
        if rotary is not None:
            # Rotate before caching: cached keys already carry their positions.
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        y = self._attention(q, k, v, mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y)), (k, v)

    def _attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """softmax(q k^T / sqrt(d)) v over allowed keys.

        `mask` is None for plain causal attention with as many queries as keys (training; no mask
        at all in a non-causal model), else a boolean (B, 1, T_q, T_k) tensor that is True where a
        query may attend to a key.
        """
        dropout = self.dropout if self.training else 0.0
        if self.path == "sdpa":
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=mask is None and self.causal
            )
        return self._explicit_attention(q, k, v, mask, dropout, self.causal)

    @staticmethod
    def _explicit_attention(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, dropout: float,
        causal: bool = True,
    ) -> torch.Tensor:
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        if mask is None and causal:
            T_q, T_k = q.size(-2), k.size(-2)
            mask = torch.ones(T_q, T_k, dtype=torch.bool, device=q.device).tril(T_k - T_q)
        if mask is not None:
            att = att.masked_fill(~mask, float("-inf"))
        att = F.softmax(att, dim=-1)
        if dropout:
            att = F.dropout(att, p=dropout)
        return att @ v


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        hidden = config.mlp_ratio * config.d_model
        self.c_fc = nn.Linear(config.d_model, hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.d_model, config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.d_model, config.bias)
        self.mlp = MLP(config)

    def forward(self, x, mask, rotary, past):
        a, cache = self.attn(self.ln_1(x), mask, rotary, past)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, cache


class GPT(nn.Module):
    def __init__(self, config: GPTConfig, generator: torch.Generator | None = None):
        """Build and initialise a model; `generator` makes the initial weights reproducible."""
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.wpe = nn.Embedding(config.block_size, config.d_model) if config.positional == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = LayerNorm(config.d_model, config.bias)
        if config.positional == "rotary":
            cos, sin = rotary_tables(config.block_size, config.head_size)
            # Not saved in checkpoints: a pure function of the config.
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self._init_weights(generator)

    def _init_weights(self, generator: torch.Generator | None) -> None:
        # GPT-2 init: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer) so the
        # residual stream's variance does not grow with depth. Small logits at init give a loss of
        # about ln(vocab_size).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * self.config.n_layer), generator=generator)
            elif p.dim() >= 2:
                nn.init.normal_(p, 0.0, 0.02, generator=generator)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.ones_(p)  # norm weights

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters counted once (the output projection shares the token embedding).

        With `non_embedding` the learned position table is left out, as in nanoGPT: it is a lookup,
        not compute, so it does not belong in the 6N FLOPs estimate.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.wpe is not None:
            n -= self.wpe.weight.numel()
        return n

    def flops_per_token(self, context: int | None = None) -> float:
        """Training FLOPs per token (forward + backward), nanoGPT's estimate: 6N + 12*L*d*T."""
        cfg = self.config
        T = context or cfg.block_size
        return 6 * self.num_params() + 12 * cfg.n_layer * cfg.d_model * T

    def configure_optimizer(
        self, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.95),
        fused: bool | None = None,
    ) -> torch.optim.AdamW:
        """AdamW with weight decay on the matrices only (embeddings included), not on norms or biases.

        Two groups, matrices first, each in parameter order. `fused=None` leaves the kernel choice to
        PyTorch; the pretraining loop asks for the fused one on CUDA.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)

    @staticmethod
    def loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy of `targets` (B, T) under `logits` (B, T, vocab), in fp32 whatever the
        logits' dtype; targets equal to `IGNORE_INDEX` count for nothing. `reduction="none"` gives
        the per-token losses (B, T), 0 at ignored targets."""
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=IGNORE_INDEX, reduction=reduction)
        return loss.view(targets.shape) if reduction == "none" else loss

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        past_kv: KVCache | None = None,
        use_cache: bool = False,
        *,
        positions: torch.Tensor | None = None,
        allowed: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, KVCache]:
        """Logits (B, T, vocab) for token ids `idx` (B, T); with `use_cache`, also the new cache.

        targets: (B, T) next-token ids; given, the mean cross-entropy (`GPT.loss`) is returned
        instead of the logits.
        attention_mask: (B, T_past + T), 1 = real token, 0 = padding; None means all real.
        past_kv: the cache returned by a previous call; `idx` then holds only the new tokens.
        positions, allowed: for sequences that are not one line of text (a tree of continuations
        scored in one pass): each token's position (B, T), and which keys each query may attend to,
        a boolean (B, 1, T, T_past + T) that replaces the causal and padding masks.
        """
        B, T = idx.shape
        past_len = past_kv[0][0].size(2) if past_kv else 0
        total = past_len + T
        if targets is not None and use_cache:
            raise ValueError("targets and use_cache: a loss is for training, a cache for decoding")
        if not self.config.causal and (past_kv or use_cache):
            raise ValueError("a non-causal model sees the whole sequence at once: it has no cache to decode with")
        if attention_mask is not None and attention_mask.shape != (B, total):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(B, total)}")

        if positions is None and attention_mask is None:
            positions = torch.arange(past_len, total, device=idx.device).expand(B, T)
        elif positions is None:
            # Count only real tokens, so left padding does not shift positions.
            positions = (attention_mask.long().cumsum(1) - 1).clamp(min=0)[:, past_len:]
        # total <= block_size bounds every position without reading the tensor (no device sync).
        if (total > self.config.block_size or allowed is not None) and self.config.positional != "none":
            top = int(positions.max())
            if top >= self.config.block_size:
                raise ValueError(f"position {top} is beyond block_size={self.config.block_size}")

        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(positions)
        x = self.drop(x)
        rotary = None
        if self.config.positional == "rotary":
            # (B, T, hs/2) -> (B, 1, T, hs/2): broadcast over heads
            rotary = (self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1))

        if allowed is not None:
            mask = allowed
        elif self.config.causal:
            mask = self._attention_mask(attention_mask, B, T, past_len, idx.device)
        else:
            mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :].expand(B, 1, T, T)
        cache: KVCache = []
        for i, block in enumerate(self.blocks):
            x, layer_cache = block(x, mask, rotary, past_kv[i] if past_kv else None)
            if use_cache:
                cache.append(layer_cache)
        logits = self._logits(self.ln_f(x))
        if targets is not None:
            return self.loss(logits, targets)
        return (logits, cache) if use_cache else logits

    @staticmethod
    def _attention_mask(
        attention_mask: torch.Tensor | None, B: int, T: int, past_len: int, device: torch.device
    ) -> torch.Tensor | None:
        """The boolean (B, 1, T, T_past + T) mask of allowed keys, or None for plain causal."""
        if attention_mask is None and past_len == 0:
            return None
        total = past_len + T
        # Query i sits at absolute index past_len + i and may see keys 0..past_len + i.
        causal = torch.ones(T, total, dtype=torch.bool, device=device).tril(past_len)
        if attention_mask is None:
            return causal.expand(B, 1, T, total)
        allowed = causal & attention_mask.bool()[:, None, None, :]
        # A padding query sees no real key; let it see itself so softmax stays finite (its output
        # is never used, and no real query attends to it).
        diagonal = torch.arange(total, device=device)[None, :] == torch.arange(past_len, total, device=device)[:, None]
        return allowed | diagonal

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        # Output projection tied to the token embedding.
        return F.linear(x, self.wte.weight)
