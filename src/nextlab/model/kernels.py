"""Batch-invariant kernels: every row's result is the same bits whatever else is in the batch.

A BLAS picks its kernel, blocking and reduction order from the *shape* of a call. MKL's sgemm on
this project's CPU gives a row other bits when the call has 1, 2-5 or more rows, and a softmax or
attention over a padded key axis sums in other lanes when padding shifts the keys. So a row's
logits depend on its neighbours only through the shapes of the calls it takes part in. The kernels
here make those shapes constants:

* `linear` multiplies rows in blocks of exactly `ROW_BLOCK` rows (the last block zero-padded),
  so every row of every batch goes through the same `ROW_BLOCK x K x N` product, the same kernel
  and the same K-blocking. Where a row sits inside the block does not change its bits (measured,
  and asserted by tests/test_nondeterminism_kernels.py). The rows left over after whole blocks
  may use a smaller block where that was measured to give the same bits (`_same_bits`): on the
  project's CPU, MKL's 16-row and 64-row fp32 products agree, and oneDNN's bf16 products agree
  for any row count, so small batches need not pay for 64 rows.
* `attention` reads keys from a per-sequence aligned cache: key j of a sequence always sits in
  slot j of its own buffer, whatever the padding, and is visited in fixed blocks of `SLOT_BLOCK`
  slots with an online softmax. A block a query may not see changes its running sums by exact
  zeros and ones, so a query's bits depend only on its own position, not on how many blocks the
  longest sequence in the batch needs. Every product is shaped like decoding one token, (1 x d)
  @ (d x SLOT_BLOCK) and (1 x SLOT_BLOCK) @ (SLOT_BLOCK x d), batched over sequences and heads;
  a prefill makes one such call per query column. Measured on MKL, a batched product's bits do
  not depend on the batch count, and the one-row shape is MKL's fastest for decoding.
* `fused_attention` is the faster alternative for the same aligned cache: torch's fused SDPA
  kernel over the visited slots with an additive mask, in calls of a fixed number of query
  columns (`FUSED_COLUMNS`). Its invariance is not argued but measured, once per shape, dtype and
  thread count (`fused_invariance`); where it fails, the invariant mode uses `attention`.
* Layer norm, GELU, adds and the embedding lookups are row-wise or element-wise already
  (measured: `F.layer_norm` gives a row the same bits for 1..8192 rows, GELU an element the same
  bits at any offset in tensors of 1..65537 elements); they run on the real rows only.

Worked example::

    >>> w = torch.randn(32, 16)
    >>> x = torch.randn(5, 16)
    >>> torch.equal(linear(x, w)[0], linear(x[:1], w)[0])     # bitwise, not merely close
    True

The invariance is a property of a fixed thread count (1 and 2 threads partition the work
differently) and of a machine and its libraries: it was established by measuring MKL on the
project's CPU, and the study re-checks it on every machine as its positive control. On a GPU the
same fixed shapes are used, so each product should meet one cuBLAS kernel, but that is for the
control to show, not something this module can promise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Rows per matrix product. 64 rows are exactly one decode step of a batch of 64, where the cost
# goal is set; a prompt decoded alone pays for 64 rows (measured on the project's CPU: ~50 us for a
# 64 x 128 x 384 fp32 product against ~7 us for one row). Smaller blocks halve that but double
# the products at batch 64.
ROW_BLOCK = 64
# Keys are visited in blocks of this many slots: whole vectors for the softmax, no scalar tails.
SLOT_BLOCK = 64


def round_up(n: int, block: int) -> int:
    return -(-n // block) * block


def key_slots(block_size: int) -> int:
    """Slots per sequence in the aligned cache: the context length rounded up to `SLOT_BLOCK`."""
    return round_up(block_size, SLOT_BLOCK)


# Smaller blocks a call may use for the rows left over after whole ROW_BLOCKs, if they give every
# row the same bits as ROW_BLOCK does; which ones do is measured per weight shape (`_same_bits`).
SMALL_BLOCKS = (1, 2, 4, 8, 16, 32)
_EQUIVALENT: dict[tuple, tuple[int, ...]] = {}


def _same_bits(weight: torch.Tensor) -> tuple[int, ...]:
    """The SMALL_BLOCKS whose products give each row the bits of a ROW_BLOCK product, for this
    weight's shape, dtype, device and the current thread count.

    The BLAS picks its kernel from the shape (MKL on the project's CPU: one path for 1 row, one
    for 2-5 or 2-15 rows, one above), never from the values, so one comparison on random rows at
    every position within the blocks decides it; it is made once per shape and cached. Where no
    smaller block matches, every call pays for a whole ROW_BLOCK.
    """
    key = (tuple(weight.shape), weight.stride(), weight.dtype, weight.device, torch.get_num_threads())
    if key not in _EQUIVALENT:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(ROW_BLOCK, weight.size(1), generator=g).to(weight.device, weight.dtype)
        reference = torch.mm(x, weight.t())
        _EQUIVALENT[key] = tuple(
            size for size in SMALL_BLOCKS
            if torch.equal(torch.cat([torch.mm(x[i : i + size], weight.t()) for i in range(0, ROW_BLOCK, size)]),
                           reference)
        )
    return _EQUIVALENT[key]


def _exact_sizes(weight: torch.Tensor) -> tuple[int, ...]:
    """Row counts one product with `weight` takes as it is: ROW_BLOCK and its equivalents."""
    return (*_same_bits(weight), ROW_BLOCK)


def common_tails(weights: list[torch.Tensor]) -> tuple[int, ...]:
    """The SMALL_BLOCKS every one of `weights` gives the bits of a ROW_BLOCK product at."""
    common = set(SMALL_BLOCKS)
    for weight in weights:
        common &= set(_same_bits(weight))
    return tuple(sorted(common))


def padded_rows(rows: int, tails: tuple[int, ...]) -> int:
    """The row count a call of `rows` rows is padded to so that `linear` multiplies it by every
    weight without another copy: whole ROW_BLOCKs and one tail block from `tails`
    (`common_tails` of the weights), else a whole ROW_BLOCK.

    A forward pass pads its residual stream once to this count; the padding rows run through the
    row-wise ops (layer norm, GELU, adds) like the others and are dropped at the end.
    """
    left = rows % ROW_BLOCK
    if rows and not left:
        return rows
    return rows - left + next((size for size in tails if size >= left), ROW_BLOCK)


def pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """x (R, K) with zero rows appended up to `rows`."""
    if x.size(0) == rows:
        return x
    return torch.nn.functional.pad(x, (0, 0, 0, rows - x.size(0)))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight^T (+ bias) for rows x (R, K), as products of fixed row-block shapes.

    Whole blocks of `ROW_BLOCK` rows first; the rows left over go into one zero-padded block of the
    smallest size in `SMALL_BLOCKS` that gives a row the same bits as ROW_BLOCK (`_same_bits`),
    else into a padded ROW_BLOCK. So a row's bits never depend on how many rows the call has. The
    bias is added afterwards as its own element-wise op (an `addmm` could fold it into the
    accumulation differently for different shapes).
    """
    rows = x.size(0)
    if rows <= ROW_BLOCK and x.is_contiguous() and rows in _exact_sizes(weight):
        # already one block of a size that gives ROW_BLOCK's bits (a forward pass pads its rows so);
        # linear without a bias is this same mm (x @ weight^T), in one call instead of two
        out = torch.nn.functional.linear(x, weight)
        return out + bias if bias is not None else out
    whole = rows - rows % ROW_BLOCK
    left = rows - whole
    tail = ROW_BLOCK
    if left:
        tail = next((size for size in _same_bits(weight) if size >= left), ROW_BLOCK)
    padded = whole + (tail if left else 0)
    if padded != rows or not x.is_contiguous() or padded == 0:
        padded = max(padded, tail)
        buffer = x.new_zeros(padded, x.size(1))
        buffer[:rows] = x
        x = buffer
    w_t = weight.t()
    blocks = [torch.mm(x[start : start + ROW_BLOCK], w_t) for start in range(0, whole, ROW_BLOCK)]
    if padded > whole:
        blocks.append(torch.mm(x[whole:padded], w_t))
    out = (blocks[0] if len(blocks) == 1 else torch.cat(blocks))[:rows]
    return out + bias if bias is not None else out


@dataclass(frozen=True)
class SlotMasks:
    """Which key slots each query may see, per visited block; shared by all layers of a call.

    keep[j]: (B, 1, T, SLOT_BLOCK) float, 1 where slot j * SLOT_BLOCK + i is at or before the
    query's position, else 0; bias[j]: the same as 0 / -inf. Multiplying and adding are exact
    and several times faster here than `masked_fill`.
    """

    keep: list[torch.Tensor]
    bias: list[torch.Tensor]

    @classmethod
    def from_positions(cls, q_pos: torch.Tensor) -> "SlotMasks":
        """q_pos: (B, T) each query's position in its own sequence, -1 for a padding query (it
        sees slot 0 only, so everything stays finite; its output is never used)."""
        visible = q_pos.clamp(min=0)[:, None, :, None]  # (B, 1, T, 1)
        offsets = torch.arange(SLOT_BLOCK, device=q_pos.device)
        blocks = int(visible.max()) // SLOT_BLOCK + 1 if q_pos.numel() else 0
        keep = [(offsets + j * SLOT_BLOCK <= visible).float() for j in range(blocks)]
        bias = [torch.zeros_like(k).masked_fill_(k == 0, float("-inf")) for k in keep]
        return cls(keep, bias)


def _columns(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, masks: SlotMasks) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over aligned keys, each query seeing the slots `masks` allows.

    q: (B, heads, T, d) queries; keys: (blocks, B, heads, d, SLOT_BLOCK), transposed, and values:
    (blocks, B, heads, SLOT_BLOCK, d), with token j of sequence b in slot j (block j // SLOT_BLOCK,
    column j % SLOT_BLOCK): each visited block is one contiguous tensor, so no product has to copy
    its operand first. Returns (B, heads, T, d) in q's dtype.

    Every product has one fixed shape, that of decoding one token: a (1 x d) @ (d x SLOT_BLOCK)
    score row and a (1 x SLOT_BLOCK) @ (SLOT_BLOCK x d) output row per sequence and head. A
    prefill of T tokens makes T such calls (one query column of the whole batch at a time), so a
    token's bits are the same whether it was decoded alone, in a batch or inside a prefill. The
    softmax between the products is row-wise over a fixed SLOT_BLOCK slots, so it runs on all
    columns at once. Keys are visited block by block with an online softmax (running max m, sum
    l and output o, in fp32), up to the block of the largest position in the call: a block a
    query may not see has every score at -inf and changes its running values by exact zeros and
    ones (m stays, exp(0) = 1, l + 0, o + 0).
    """
    B, heads, T, d = q.shape
    if keys.shape[1:] != (B, heads, d, SLOT_BLOCK) or values.shape[1:] != (B, heads, SLOT_BLOCK, d):
        raise ValueError(f"attention wants blocked keys and values of {SLOT_BLOCK} slots for {B} sequences, "
                         f"got {tuple(keys.shape)} and {tuple(values.shape)}")
    if T == 0:
        return q.new_empty(B, heads, 0, d)
    # (B * heads) batched products, called on 3-D views directly (torch.bmm, no reshaping).
    q = (q * (1.0 / math.sqrt(d))).reshape(B * heads, T, d)
    columns = [q[:, t : t + 1] for t in range(T)]
    m = l = o = q.new_empty(0)  # running max, sum and output: set by block 0
    for j, (keep, bias) in enumerate(zip(masks.keep, masks.bias)):
        k_block, v_block = keys[j].view(B * heads, d, SLOT_BLOCK), values[j].view(B * heads, SLOT_BLOCK, d)
        scores = _columns([torch.bmm(col, k_block) for col in columns]).view(B, heads, T, SLOT_BLOCK).float()
        block_max = (scores + bias).amax(dim=-1, keepdim=True)
        # Slot 0 is always visible, so m is finite from the first block on.
        m_new = block_max if j == 0 else torch.maximum(m, block_max)
        # Hidden slots are zeroed before exp (exp(-inf) takes a slow path in torch's vectorised
        # exp) and after it, which gives the same exact zeros as softmax over -inf.
        p = torch.exp((scores - m_new) * keep) * keep
        p_low = p.to(values.dtype).view(B * heads, T, SLOT_BLOCK)
        pv = _columns([torch.bmm(p_low[:, t : t + 1], v_block) for t in range(T)]).view(B, heads, T, d).float()
        if j == 0:
            l, o = p.sum(dim=-1, keepdim=True), pv
        else:
            alpha = torch.exp(m - m_new)
            l = l * alpha + p.sum(dim=-1, keepdim=True)
            o = o * alpha + pv
        m = m_new
    return (o / l).to(q.dtype)


# ---- attention through the fused kernel, where it is batch invariant ------------------------------

# Query columns per fused call. Every call has this many (the last chunk of a prefill, and a
# decoding step, padded), so a query's bits never depend on how many columns a call holds: the
# fused kernel takes another path for one query row than for several (measured: in bfloat16 a
# 1-row call and an 8-row call can round a row differently). Per dtype, the faster of 1 and 4
# (measured on an AMD EPYC with avx512_bf16, batch 64, 128 slots, head size 32: bfloat16 4 rows
# 0.87 ms against 1 row 1.32 ms; float32 4 rows 0.42 ms against 0.23 ms).
FUSED_COLUMNS = {torch.bfloat16: 4}
_SDPA_INVARIANT: dict[tuple, bool] = {}


def fused_columns(dtype: torch.dtype) -> int:
    return FUSED_COLUMNS.get(dtype, 1)


def visible_bias(q_pos: torch.Tensor, dtype: torch.dtype, last: int | None = None) -> torch.Tensor:
    """(B, 1, T, S) additive mask, 0 where slot s is at or before the query's position, -inf after
    it; S covers the blocks up to the largest position `last` (computed when not given). A padding
    query (position -1) sees slot 0 only."""
    if last is None:
        last = int(q_pos.max()) if q_pos.numel() else 0
    slots = (max(last, 0) // SLOT_BLOCK + 1) * SLOT_BLOCK
    hidden = torch.arange(slots, device=q_pos.device) > q_pos.clamp(min=0)[:, None, :, None]
    return torch.zeros(hidden.shape, dtype=dtype, device=q_pos.device).masked_fill_(hidden, float("-inf"))


def fused_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
                    columns: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v by `F.scaled_dot_product_attention`, over the first S
    slots of aligned keys and values (B, heads, slots, d), S = bias.size(-1); q (B, heads, T, d).

    The query columns go in calls of exactly `columns` columns (`fused_columns`), the last padded
    with zero queries that see every slot (finite, and dropped)."""
    from torch.nn import functional as F
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    S = bias.size(-1)
    k, v = keys[:, :, :S], values[:, :, :S]
    T = q.size(2)
    padded = round_up(T, columns)
    if padded != T:
        q, bias = F.pad(q, (0, 0, 0, padded - T)), F.pad(bias, (0, 0, 0, padded - T))
    if padded == columns:
        out = sdpa(q, k, v, attn_mask=bias)
    else:
        out = torch.cat([sdpa(q[:, :, c : c + columns], k, v, attn_mask=bias[:, :, c : c + columns])
                         for c in range(0, padded, columns)], dim=2)
    return out[:, :, :T] if padded != T else out


def fused_invariance(heads: int, head_size: int, slots: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether `fused_attention` gives a query the same bits whatever the batch size, its
    neighbours, the other columns of its call, its column within the call and the number of slots
    visited, at this shape, dtype, device and thread count. Measured once on random data and
    cached, as `_same_bits` is for products.

    Measured on the project's CPUs with torch 2.13: true with one thread in float32 and bfloat16;
    with two threads in float32 a lone sequence gets other bits than one among neighbours, so
    `BatchInvariantGPT` falls back to `attention` (the explicit block kernel) there.
    """
    key = (heads, head_size, slots, dtype, device, torch.get_num_threads())
    if key in _SDPA_INVARIANT:
        return _SDPA_INVARIANT[key]
    g = torch.Generator().manual_seed(0)
    columns = fused_columns(dtype)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    same = True
    for pos in sorted({0, min(37, slots - 1), min(SLOT_BLOCK - 1, slots - 1), min(SLOT_BLOCK + 5, slots - 1),
                       slots - 1}):
        keys, values, query = rand(1, heads, slots, head_size), rand(1, heads, slots, head_size), rand(1, heads, 1,
                                                                                                       head_size)
        alone = fused_attention(query, keys, values, visible_bias(torch.tensor([[pos]], device=device), dtype), columns)
        for batch, width, column in ((1, 2 * columns + 1, columns), (2, 3, 2), (3, columns, columns - 1),
                                     (5, 2 * columns, 1), (16, 1, 0)):
            q, k, v = rand(batch, heads, width, head_size), rand(batch, heads, slots, head_size), rand(batch, heads, slots,
                                                                                                     head_size)
            row = batch // 2
            q_pos = torch.randint(0, slots, (batch, width), generator=g).to(device)
            q_pos[0, 0] = slots - 1  # a query at the last slot: the call visits every block
            q[row, :, column], k[row], v[row], q_pos[row, column] = query[0, :, 0], keys[0], values[0], pos
            got = fused_attention(q, k, v, visible_bias(q_pos, dtype), columns)
            same &= torch.equal(got[row, :, column], alone[0, :, 0])
    _SDPA_INVARIANT[key] = same
    return same
