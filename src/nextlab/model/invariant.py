"""The batch-invariant mode: a prompt's logits are the same bits in any batch.

`BatchInvariantGPT(model)` wraps a trained `GPT` (same weights, no copy) and answers the same
calls: `forward(idx, attention_mask=None, past_kv=None, use_cache=False)`, so `generate` and
`token_logprobs` run on it unchanged::

    >>> from nextlab.model import GPT, GPTConfig
    >>> from nextlab.generate import generate
    >>> model = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=1, n_head=2, d_model=16))
    >>> inv = BatchInvariantGPT(model)
    >>> alone = generate(inv, [[0, 7, 9]], max_new_tokens=5).tokens[0]
    >>> generate(inv, [[0, 7, 9], [0, 5, 5, 5, 5, 2]], max_new_tokens=5).tokens[0] == alone
    True

What changes against `GPT.forward` (the default path):

* Only real tokens are computed. Padding columns are dropped before the first layer: the real
  tokens of the whole batch become rows of one (R, d_model) tensor, padded once to a row count
  every product takes as one fixed-size block (`kernels.padded_rows`, `kernels.linear`). Logits
  at padding positions are returned as zeros.
* The KV cache is aligned (`AlignedKVCache`): token j of a sequence is stored in slot j of the
  sequence's own fixed-length buffer, never shifted by padding. Attention runs through the fused
  SDPA kernel in calls of a fixed number of query columns (`kernels.fused_attention`) where a
  probe finds that kernel batch invariant at the model's shape, dtype and thread count
  (`kernels.fused_invariance`, measured once per process), else through an explicit kernel that
  visits the cache in fixed blocks of slots with products shaped like one decoding step
  (`kernels.attention`). Either way a prefill and token-by-token decoding compute every token the
  same way.

Why a wrapper and not a switch inside `GPT.forward`: the default cache concatenates keys along the
padded time axis, so a token's keys move when the padding changes, and the model's attention
method receives a boolean mask rather than positions. The aligned cache and the row-packed
forward are a different data layout, not another kernel behind the same call; keeping them here
leaves `nextlab.model` unchanged and its modules (weights, layer norms, rotary tables) shared.

The model's architecture (pre-norm blocks, GELU MLP, tied output projection, learned / rotary /
no positions) is walked here from its modules; `_check_supported` refuses a model config with a
field this walk does not know, and tests compare its logits with `GPT.forward`'s (to ~1e-5), so a
change to the model cannot silently diverge from this mode.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn as nn
from torch.nn import functional as F

from nextlab.model import GPT, kernels
from nextlab.model.rotary import apply_rotary

# The GPTConfig fields this forward implements; `dropout` and `attention` do not change the maths
# of an eval-mode forward (the invariant mode has its own attention kernel).
_KNOWN_FIELDS = {
    "vocab_size", "block_size", "n_layer", "n_head", "d_model", "positional", "attention",
    "mlp_ratio", "dropout", "bias", "causal",
}


def _check_supported(model: GPT) -> None:
    unknown = {f.name for f in fields(model.config)} - _KNOWN_FIELDS
    if unknown:
        raise NotImplementedError(
            f"the batch-invariant forward does not implement model config field(s) {sorted(unknown)}; "
            "extend nextlab.model.invariant before using it on this model"
        )
    if not model.config.causal:
        raise NotImplementedError("the batch-invariant forward decodes causally; this model is not causal")


@dataclass
class AlignedKVCache:
    """Per layer, keys and values of every sequence; token j of sequence b sits in slot j.

    Two layouts, one per attention kernel. `fused` (for `kernels.fused_attention`): keys and values
    (B, heads, slots, head_size). `blocked` (for `kernels.attention`): slots in blocks of
    `kernels.SLOT_BLOCK`, block-major, so that each block the kernel visits is one contiguous
    tensor: keys (blocks, B, heads, head_size, SLOT_BLOCK), transposed for the score product, and
    values (blocks, B, heads, SLOT_BLOCK, head_size).
    lengths: (B,) real tokens stored per sequence; seen: attention-mask columns consumed so far
    (real and padding), so the next call's mask must have `seen + T` columns; zeroed: how many
    blocks hold zeros or written keys (a block is zeroed when attention first visits it: a slot
    not yet written is multiplied by probability 0, and 0 * NaN would be NaN).
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    lengths: torch.Tensor
    seen: int = 0
    zeroed: int = 0
    layout: str = "blocked"

    @classmethod
    def empty(cls, model: GPT, batch: int, dtype: torch.dtype, device: torch.device,
              layout: str = "blocked") -> "AlignedKVCache":
        cfg = model.config
        slots = kernels.key_slots(cfg.block_size)
        if layout == "fused":
            k_shape = v_shape = (batch, cfg.n_head, slots, cfg.head_size)
        elif layout == "blocked":
            blocks = slots // kernels.SLOT_BLOCK
            k_shape = (blocks, batch, cfg.n_head, cfg.head_size, kernels.SLOT_BLOCK)
            v_shape = (blocks, batch, cfg.n_head, kernels.SLOT_BLOCK, cfg.head_size)
        else:
            raise ValueError(f"unknown cache layout {layout!r}")
        return cls(
            keys=[torch.empty(k_shape, dtype=dtype, device=device) for _ in range(cfg.n_layer)],
            values=[torch.empty(v_shape, dtype=dtype, device=device) for _ in range(cfg.n_layer)],
            lengths=torch.zeros(batch, dtype=torch.long, device=device),
            layout=layout,
        )

    def zero_blocks(self, blocks: int) -> None:
        """Zero the slot blocks up to `blocks` that were never zeroed (before keys are written)."""
        if blocks <= self.zeroed:
            return
        width = kernels.SLOT_BLOCK
        for keys, values in zip(self.keys, self.values):
            if self.layout == "fused":
                keys[:, :, self.zeroed * width : blocks * width] = 0
                values[:, :, self.zeroed * width : blocks * width] = 0
            else:
                keys[self.zeroed : blocks] = 0
                values[self.zeroed : blocks] = 0
        self.zeroed = blocks

    def write_index(self, b_idx: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat indices where the new tokens (sequence b_idx, position pos) go, for index_copy_:
        rows of values viewed as (-1, head_size), and (blocked) elements of keys viewed as (-1,)
        or (fused) rows of keys, the same as the values'."""
        heads = self.keys[0].shape[-3] if self.layout == "fused" else self.keys[0].shape[2]
        head_index = torch.arange(heads, device=pos.device)
        if self.layout == "fused":
            slots = self.keys[0].shape[2]
            rows = ((b_idx[:, None] * heads + head_index) * slots + pos[:, None]).reshape(-1)
            return rows, rows
        _, B, heads, d, width = self.keys[0].shape
        block, column = pos // width, pos % width
        cell = (block[:, None] * B + b_idx[:, None]) * heads + head_index  # (R, heads)
        value_rows = (cell * width + column[:, None]).reshape(-1)
        channels = torch.arange(d, device=pos.device)
        key_cells = ((cell[:, :, None] * d + channels) * width + column[:, None, None]).reshape(-1)
        return value_rows, key_cells

    def write(self, layer: int, index: tuple[torch.Tensor, torch.Tensor], k: torch.Tensor, v: torch.Tensor) -> None:
        """Store the new tokens' keys and values (R, heads, head_size) of one layer at `index`."""
        value_rows, key_index = index
        d = v.size(-1)
        if self.layout == "fused":
            self.keys[layer].view(-1, d).index_copy_(0, key_index, k.reshape(-1, d))
        else:
            self.keys[layer].view(-1).index_copy_(0, key_index, k.reshape(-1))
        self.values[layer].view(-1, d).index_copy_(0, value_rows, v.reshape(-1, d))


class BatchInvariantGPT(nn.Module):
    """A GPT whose per-prompt logits do not depend on batch size, neighbours, padding or cache."""

    def __init__(self, model: GPT):
        super().__init__()
        _check_supported(model)
        self.model = model
        self._plans: dict[tuple, tuple[bool, tuple[int, ...]]] = {}  # per (dtype, device, threads): `_plan`

    @property
    def config(self):
        return self.model.config

    @torch.no_grad()
    def forward(
        self,
        idx: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        past_kv: AlignedKVCache | None = None,
        use_cache: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, AlignedKVCache]:
        """As `GPT.forward`; `past_kv` is an `AlignedKVCache` (updated in place and returned)."""
        model, cfg = self.model, self.model.config
        B, T = idx.shape
        dtype, device = model.wte.weight.dtype, idx.device
        fused, tails = self._plan(dtype, device)
        if past_kv is None:
            past_kv = AlignedKVCache.empty(model, B, dtype, device, "fused" if fused else "blocked")
        cache = past_kv
        if cache.lengths.size(0) != B:
            raise ValueError(f"cache holds {cache.lengths.size(0)} sequences, idx has {B}")
        if attention_mask is None:
            new_mask = torch.ones(B, T, dtype=torch.long, device=device)
        else:
            if attention_mask.shape != (B, cache.seen + T):
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(B, cache.seen + T)}"
                )
            new_mask = attention_mask[:, cache.seen :].long()

        # Real tokens only, sequence by sequence: (b, t) in the input, rank among this call's new
        # tokens of b (its query column) and position in b's whole sequence (its cache slot).
        real = new_mask.bool()
        dense = bool(real.all())  # no padding in this call: the rows are the (B, T) grid itself
        if dense:  # every decoding step of an unpadded batch: the grid needs no search
            grid = torch.arange(T, device=device)
            b_idx, t_idx = torch.arange(B, device=device).repeat_interleave(T), grid.repeat(B)
            rank, width = t_idx, T
            q_pos = cache.lengths[:, None] + grid
            pos = q_pos.view(-1)
        else:
            b_idx, t_idx = real.nonzero(as_tuple=True)
            rank = (new_mask.cumsum(1) - 1)[b_idx, t_idx]
            pos = cache.lengths[b_idx] + rank
            width = int(real.sum(1).max()) if b_idx.numel() else 0
            q_pos = torch.full((B, width), -1, dtype=torch.long, device=device)
            q_pos[b_idx, rank] = pos
        rows = b_idx.numel()
        last = int(pos.max()) if rows else 0
        if last >= cfg.block_size:
            raise ValueError(f"position {last} is beyond block_size={cfg.block_size}")
        if cache.layout == "fused":
            bias = kernels.visible_bias(q_pos, dtype, last)
            cache.zero_blocks(bias.size(-1) // kernels.SLOT_BLOCK)
        else:
            masks = kernels.SlotMasks.from_positions(q_pos)
            cache.zero_blocks(len(masks.keep))
        index = cache.write_index(b_idx, pos)

        x = model.wte(idx.reshape(-1) if dense else idx[b_idx, t_idx])
        if model.wpe is not None:
            x = x + model.wpe(pos)
        rotary = None
        if cfg.positional == "rotary":
            rotary = (model.rope_cos[pos].unsqueeze(1), model.rope_sin[pos].unsqueeze(1))
        # The residual stream is padded once to a row count every product takes as it is
        # (`kernels.padded_rows`); the padding rows never reach attention or the output.
        x = kernels.pad_rows(x, kernels.padded_rows(rows, tails))

        for layer, block in enumerate(model.blocks):
            attn = block.attn
            h = kernels.linear(block.ln_1(x), attn.c_attn.weight, attn.c_attn.bias)[:rows]
            q, k, v = (t.reshape(rows, cfg.n_head, cfg.head_size) for t in h.split(cfg.d_model, dim=1))
            if rotary is not None:
                q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
            cache.write(layer, index, k, v)
            if dense:
                queries = q.view(B, T, cfg.n_head, cfg.head_size).transpose(1, 2)
            else:
                queries = q.new_zeros(B, cfg.n_head, width, cfg.head_size)
                queries[b_idx, :, rank] = q
            if cache.layout == "fused":
                y = kernels.fused_attention(queries, cache.keys[layer], cache.values[layer], bias,
                                            kernels.fused_columns(dtype))
            else:
                y = kernels.attention(queries, cache.keys[layer], cache.values[layer], masks)
            y = y.transpose(1, 2).reshape(rows, cfg.d_model) if dense else y[b_idx, :, rank].reshape(rows, cfg.d_model)
            x = x + kernels.linear(kernels.pad_rows(y, x.size(0)), attn.c_proj.weight, attn.c_proj.bias)
            mlp = block.mlp
            h = F.gelu(kernels.linear(block.ln_2(x), mlp.c_fc.weight, mlp.c_fc.bias))
            x = x + kernels.linear(h, mlp.c_proj.weight, mlp.c_proj.bias)

        logits_rows = kernels.linear(model.ln_f(x), model.wte.weight)[:rows]
        if dense:
            logits = logits_rows.view(B, T, cfg.vocab_size)
        else:
            logits = logits_rows.new_empty(B * T, cfg.vocab_size)
            logits[~real.view(-1)] = 0
            logits.index_copy_(0, b_idx * T + t_idx, logits_rows)
            logits = logits.view(B, T, cfg.vocab_size)
        cache.lengths = cache.lengths + real.sum(1)
        cache.seen += T
        return (logits, cache) if use_cache else logits

    def _plan(self, dtype: torch.dtype, device: torch.device) -> tuple[bool, tuple[int, ...]]:
        """What a forward pass at this dtype, device and thread count runs, measured once: the
        attention kernel (`fused_kernel`) and the tail blocks every product agrees with a
        ROW_BLOCK product at (`kernels.common_tails`)."""
        key = (dtype, device, torch.get_num_threads())
        plans = self._plans
        if key not in plans:
            block = self.model.blocks[0]
            weights = [block.attn.c_attn.weight, block.attn.c_proj.weight, block.mlp.c_fc.weight,
                       block.mlp.c_proj.weight, self.model.wte.weight]  # every shape of product once
            plans[key] = (self.fused_kernel(dtype, device), kernels.common_tails(weights))
        return plans[key]

    def fused_kernel(self, dtype: torch.dtype, device: torch.device) -> bool:
        """Whether this model's attention may run through the fused kernel here
        (`kernels.fused_invariance`); else the explicit block kernel `kernels.attention` (and
        the blocked cache layout) is used."""
        cfg = self.model.config
        return kernels.fused_invariance(cfg.n_head, cfg.head_size, kernels.key_slots(cfg.block_size), dtype, device)


def batch_invariant(model: GPT) -> BatchInvariantGPT:
    """The batch-invariant mode of `model` (shares its weights): pass it wherever a GPT goes."""
    return BatchInvariantGPT(model)
