"""Where does each attention head look from the position that must produce the answer?

A question prompt is `<|bos|><|question|>In which city was Ada Quill born?<|answer|>`; the model's
first answer token is predicted at `<|answer|>`, the query position. Each key position before it
gets one role, the first that applies in this order:

    self (the query itself), first (the bos token), name (the subject's name tokens),
    attribute (the word that names what is asked: year, city, occupation, company),
    previous (the token just before the query), other.

A head's share for a role is the attention weight the query puts on that role's positions,
averaged over prompts; `chance` is the share a head attending uniformly would give it, so a head
specialises in a role when its share is well above chance.

    >>> q = "In which city was Ada Quill born?"
    >>> offsets = [(0, 2), (2, 8), (8, 13), (13, 17), (17, 21), (21, 27), (27, 32), (32, 33)]
    >>> prompt_roles(offsets, name=(18, 27), attribute=(9, 13))
    ['first', 'other', 'other', 'other', 'attribute', 'other', 'name', 'name', 'other', 'previous', 'self']
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

ROLES = ("name", "attribute", "previous", "first", "self", "other")
ATTRIBUTE_WORDS = {"birth_year": "year", "birth_city": "city", "occupation": "occupation", "employer": "company"}


def _overlaps(span: tuple[int, int], other: tuple[int, int] | None) -> bool:
    return other is not None and span[0] < other[1] and span[1] > other[0]


def prompt_roles(offsets: list[tuple[int, int]], name: tuple[int, int],
                 attribute: tuple[int, int] | None) -> list[str]:
    """Roles of [bos, <|question|>, *question tokens, <|answer|>] (see the module's order)."""
    query = len(offsets) + 2
    out = []
    for position in range(query + 1):
        if position == query:
            out.append("self")
        elif position == 0:
            out.append("first")
        elif position == 1:
            out.append("previous" if query == 2 else "other")
        else:
            span = offsets[position - 2]
            if _overlaps(span, name):
                out.append("name")
            elif _overlaps(span, attribute):
                out.append("attribute")
            elif position == query - 1:
                out.append("previous")
            else:
                out.append("other")
    return out


@torch.no_grad()
def query_attention(model: Any, prompts: list[list[int]]) -> list[np.ndarray]:
    """Per prompt, the attention weights (layers, heads, prompt length) of its last position.

    The weights are recomputed from the queries and keys each layer's attention sees (captured by a
    hook), so the model keeps its own fused attention kernel."""
    from nextlab.generate import pad

    config = model.config
    inputs: dict[int, tuple[torch.Tensor, Any]] = {}

    def keep(layer: int):
        def hook(module: Any, args: tuple[Any, ...]) -> None:
            inputs[layer] = (args[0], args[2])  # the block's normalised input, the rotary tables

        return hook

    handles = [block.attn.register_forward_pre_hook(keep(i)) for i, block in enumerate(model.blocks)]
    device = next(model.parameters()).device
    lengths = [len(p) for p in prompts]
    idx, _ = pad(prompts, device=device)  # right padding: never seen by a real query
    width = idx.size(1)
    try:
        model(idx)
    finally:
        for handle in handles:
            handle.remove()
    from nextlab.model.rotary import apply_rotary

    weights = np.zeros((len(prompts), config.n_layer, config.n_head, width))
    last = torch.tensor(lengths, device=device) - 1
    for layer, block in enumerate(model.blocks):
        x, rotary = inputs[layer]
        B, T, C = x.shape
        q, k, _ = block.attn.c_attn(x).split(C, dim=2)
        q, k = (t.view(B, T, config.n_head, config.head_size).transpose(1, 2) for t in (q, k))
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        q_last = q[torch.arange(B, device=device), :, last]  # (B, heads, hs)
        scores = torch.einsum("bhd,bhtd->bht", q_last.float(), k.float()) / math.sqrt(config.head_size)
        allowed = torch.arange(T, device=device)[None, :] <= last[:, None]
        scores = scores.masked_fill(~allowed[:, None, :], float("-inf"))
        weights[:, layer] = torch.softmax(scores, dim=-1).cpu().numpy()
    return [weights[r, :, :, : lengths[r]] for r in range(len(prompts))]


def role_shares(weights: list[np.ndarray], prompt_role_lists: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """(shares, chance): per prompt x layer x head x role the attention on that role's positions,
    and per prompt x role the share of positions with that role (uniform attention).

    >>> w = [np.array([[[0.1, 0.0, 0.9]]])]                    # 1 layer, 1 head, 3 positions
    >>> shares, chance = role_shares(w, [["first", "name", "self"]])
    >>> shares[0, 0, 0].round(2).tolist(), chance[0].round(2).tolist()
    ([0.0, 0.0, 0.0, 0.1, 0.9, 0.0], [0.33, 0.0, 0.0, 0.33, 0.33, 0.0])
    """
    n_layer, n_head = weights[0].shape[:2]
    shares = np.zeros((len(weights), n_layer, n_head, len(ROLES)))
    chance = np.zeros((len(weights), len(ROLES)))
    for p, (w, labels) in enumerate(zip(weights, prompt_role_lists)):
        labels = np.array(labels)
        for r, role in enumerate(ROLES):
            chosen = labels == role
            shares[p, :, :, r] = w[:, :, chosen].sum(-1)
            chance[p, r] = chosen.mean()
    return shares, chance


def head_table(shares: np.ndarray, chance: np.ndarray, samples: int, seed: int) -> list[dict[str, Any]]:
    """One row per layer x head x role: the mean share over prompts with a 95% bootstrap interval,
    chance, and whether the role is the head's largest."""
    from nextlab.evaluate.bootstrap import interval, weighted_mean

    n, n_layer, n_head, n_roles = shares.shape
    ones = np.ones((1, n))
    rows = []
    for layer in range(n_layer):
        for head in range(n_head):
            means = shares[:, layer, head].mean(0)
            top = int(np.argmax(means))
            for r, role in enumerate(ROLES):
                values = shares[:, layer, head, r][None]
                point, lo, hi = interval(lambda C, v=values: weighted_mean(C, ones, v), 1, n, samples, seed=seed)
                rows.append({"layer": layer, "head": head, "role": role, "share": point, "share_lo": lo,
                             "share_hi": hi, "chance": float(chance[:, r].mean()), "prompts": n,
                             "top": r == top})
    return rows
