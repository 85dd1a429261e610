"""Running one batch of requests the way a server would, and reading back each row's logits.

Three ways to run a batch, all greedy (temperature 0):

* `prefill_logits`: teacher forcing in one forward pass over whole sequences (no KV cache);
* `decode_batch` with `forced` tokens: teacher forcing one token at a time with a KV cache;
* `decode_batch` without them: free-running greedy decoding with a KV cache.

Padding sides (`side`):

* `none`: every row has the same length and no attention mask is passed at all; rows never stop
  early (a row past its end-of-text keeps decoding, and the caller truncates), so no padding
  ever enters the batch;
* `left`: prompts are left-padded, as `nextlab.generate` does;
* `right`: prompts are right-padded; new tokens are appended after the padding, and the mask
  (positions count real tokens only) keeps them where they belong.
With `left` and `right` a row that is done (end-of-text, or its forced tokens used up) is fed
padding with mask 0, as in `nextlab.generate`.

Past the context (`Window`): to decode more tokens than the model's positions hold, every
`every` new tokens each row's context restarts from its own last `keep` real tokens, prefilled
at positions 0.. (the model was trained on windows cut anywhere in the token stream, so this is
text it knows). The restarts depend only on the step count, never on the batch: a prompt meets
the same restarts alone and in any batch, and `prefill_forced` cuts the same windows.

    >>> window_for(block_size=128, longest_prompt=20, max_new_tokens=128)
    Window(every=64, keep=64)
    >>> window_for(block_size=128, longest_prompt=20, max_new_tokens=100) is None
    True

    >>> from nextlab.model import GPT, GPTConfig
    >>> model = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=1, n_head=2, d_model=16))
    >>> rows = decode_batch(model, [[0, 7, 9], [0, 5]], side="left", max_new_tokens=3, eos_id=None,
    ...                     keep_logits=[True, False])
    >>> len(rows[0].tokens), rows[0].logits.shape, rows[1].logits is None
    (3, torch.Size([3, 64]), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from nextlab.generate import Decoder, pad
from nextlab.tokenizer import PAD_ID

Side = Literal["none", "left", "right"]
SIDES = ("none", "left", "right")


@dataclass
class RowResult:
    """One row of a batch: the tokens chosen (forced or greedy) and, if kept, their step logits."""

    tokens: list[int]
    logits: torch.Tensor | None  # (steps, vocab) in the model's dtype, on the CPU


def pad_batch(
    seqs: Sequence[Sequence[int]], side: Side, device: torch.device | str = "cpu", pad_id: int = PAD_ID
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token ids (B, T_max) and the mask (B, T_max) of real tokens; the mask is None for `none`."""
    if side not in SIDES:
        raise ValueError(f"padding side {side!r}; allowed: {', '.join(SIDES)}")
    lengths = [len(s) for s in seqs]
    if min(lengths) == 0:
        raise ValueError("every sequence needs at least one token")
    width = max(lengths)
    if side == "none" and min(lengths) != width:
        raise ValueError(f"padding 'none' needs sequences of one length, got lengths {sorted(set(lengths))}")
    idx, mask = pad(seqs, pad_id, left=side == "left", device=device)
    return idx, (None if side == "none" else mask)


@dataclass(frozen=True)
class Window:
    every: int  # new tokens between restarts
    keep: int  # real tokens of each row a restart keeps

    def starts(self, steps: int) -> list[int]:
        """The steps at which a segment begins (0: the prompt itself)."""
        return list(range(0, max(steps, 1), self.every))


def window_for(block_size: int, longest_prompt: int, max_new_tokens: int) -> Window | None:
    """None when every prompt and its new tokens fit the context; else restarts every half
    context from the last half (so a segment never passes `block_size` positions)."""
    if longest_prompt + max_new_tokens <= block_size:
        return None
    half = block_size // 2
    if longest_prompt > half or half < 1:
        raise ValueError(f"a prompt of {longest_prompt} tokens leaves no room to restart the context "
                         f"(block_size {block_size}): prompts must be at most {half} tokens")
    return Window(every=half, keep=half)


def _segments(steps: int, window: Window | None) -> list[tuple[int, int]]:
    if window is None:
        return [(0, steps)]
    return [(s, min(s + window.every, steps)) for s in window.starts(steps)]


def _cycle(tokens: Sequence[int], length: int) -> list[int]:
    tokens = list(tokens)
    return (tokens * (-(-length // len(tokens))))[:length]


@torch.no_grad()
def prefill_forced(
    model: torch.nn.Module, prompts: Sequence[Sequence[int]], forced: Sequence[Sequence[int] | None], side: Side,
    window: Window | None = None,
) -> list[torch.Tensor | None]:
    """Teacher forcing without a KV cache: per row with forced tokens, the logits (len(forced),
    vocab) that predict each of them, one forward pass per segment of `window` over the segment's
    context and forced tokens. Rows without forced tokens are neighbours: their prompt is a row of
    every pass (with side `none` repeated or cut to the targets' length)."""
    steps = max((len(f) for f in forced if f is not None), default=0)
    got: list[list[torch.Tensor]] = [[] for _ in prompts]
    for start, end in _segments(steps, window):
        seqs, reads = [], []
        for prompt, f in zip(prompts, forced):
            if f is None or len(f) <= start:
                seqs.append(None)
                reads.append(None)
                continue
            stop = min(end, len(f))
            context = list(prompt) + list(f[:start])
            if start:
                context = context[-window.keep :]
            seqs.append(context + list(f[start : stop - 1]))
            reads.append((len(context) - 1, stop - start))
        lengths = {len(q) for q in seqs if q is not None}
        if not lengths:
            continue
        fill = max(lengths)
        rows = [q if q is not None else (_cycle(p, fill) if side == "none" or start else list(p))
                for q, p in zip(seqs, prompts)]
        out = prefill_logits(model, rows, side, keep=[r is not None for r in reads])
        for row, (read, logits) in enumerate(zip(reads, out)):
            if read is not None:
                got[row].append(logits[read[0] : read[0] + read[1]])
    return [torch.cat(g) if g else None for g in got]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _last_real(mask: torch.Tensor | None, B: int, T: int, device: torch.device) -> torch.Tensor:
    """Column of each row's last real token."""
    if mask is None:
        return torch.full((B,), T - 1, dtype=torch.long, device=device)
    cols = torch.arange(T, device=device).expand(B, T)
    return torch.where(mask.bool(), cols, torch.full_like(cols, -1)).amax(dim=1)


@torch.no_grad()
def prefill_logits(
    model: torch.nn.Module, seqs: Sequence[Sequence[int]], side: Side, keep: Sequence[bool] | None = None
) -> list[torch.Tensor | None]:
    """One forward pass; per row, the logits (len, vocab) at its real positions (None if not kept)."""
    device = _device(model)
    idx, mask = pad_batch(seqs, side, device)
    logits = model(idx, attention_mask=mask)
    out: list[torch.Tensor | None] = []
    width = idx.size(1)
    for row, seq in enumerate(seqs):
        if keep is not None and not keep[row]:
            out.append(None)
            continue
        start = width - len(seq) if side == "left" else 0
        out.append(logits[row, start : start + len(seq)].cpu())
    return out


@torch.no_grad()
def decode_batch(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    side: Side,
    max_new_tokens: int,
    eos_id: int | None,
    forced: Sequence[Sequence[int] | None] | None = None,
    keep_logits: Sequence[bool] | None = None,
    stop_rows: Sequence[bool] | None = None,
    window: Window | None = None,
) -> list[RowResult]:
    """Decode a batch with a KV cache; row i feeds `forced[i]` (teacher forcing) if given, else greedy.

    A forced row is done after its last forced token; a free row after `eos_id` or
    `max_new_tokens`. With side `none` nothing is ever padded: done rows keep decoding greedily
    and their extra tokens are not reported. The loop ends when every row in `stop_rows` (default:
    all) is done; the other rows are neighbours whose own results the caller does not need.
    """
    B = len(prompts)
    forced = list(forced) if forced is not None else [None] * B
    keep_logits = list(keep_logits) if keep_logits is not None else [False] * B
    stop_rows = list(stop_rows) if stop_rows is not None else [True] * B
    device = _device(model)
    idx, mask = pad_batch(prompts, side, device)
    dense = mask is None
    limits = [len(f) if f is not None else max_new_tokens for f in forced]
    tokens: list[list[int]] = [[] for _ in range(B)]
    step_logits: list[list[torch.Tensor]] = [[] for _ in range(B)]
    done = [limit == 0 for limit in limits]
    contexts = [list(p) for p in prompts]  # each row's real tokens, for a restart

    decoder = Decoder(model)
    last = decoder.prefill(idx, mask)[torch.arange(B, device=device), _last_real(mask, B, idx.size(1), device)]
    for step in range(max(limits, default=0)):
        greedy = last.argmax(dim=-1).tolist()
        was_done = list(done)
        chosen = []
        for row in range(B):
            if was_done[row]:
                chosen.append(greedy[row] if dense else PAD_ID)
                continue
            token = forced[row][step] if forced[row] is not None else greedy[row]
            tokens[row].append(token)
            if keep_logits[row]:
                step_logits[row].append(last[row].cpu())
            chosen.append(token)
            ended = forced[row] is None and eos_id is not None and token == eos_id
            done[row] = ended or len(tokens[row]) >= limits[row]
        if all(d for d, s in zip(done, stop_rows) if s):
            break
        for row in range(B):
            if dense or not was_done[row]:
                contexts[row].append(chosen[row])
        if window is not None and (step + 1) % window.every == 0:
            idx, mask = pad_batch([c[-window.keep :] for c in contexts], side, device)
            dense = mask is None
            last = decoder.prefill(idx, mask)[torch.arange(B, device=device), _last_real(mask, B, idx.size(1), device)]
            continue
        # As in nextlab.generate: a token is real for rows that were running at this step.
        real = torch.tensor([not d for d in was_done], dtype=torch.bool, device=device)
        last = decoder.step(torch.tensor(chosen, dtype=torch.long, device=device), real)
    vocab = last.size(-1)
    results = []
    for row in range(B):
        kept = None
        if keep_logits[row]:
            kept = torch.stack(step_logits[row]) if step_logits[row] else torch.zeros(0, vocab, dtype=last.dtype)
        results.append(RowResult(tokens[row], kept))
    return results
