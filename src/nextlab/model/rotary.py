"""Rotary position embeddings (RoPE, Su et al. 2021): positions as rotations of query/key pairs.

Each pair of channels (x[2i], x[2i+1]) of a head is rotated by the angle pos * theta_i with
theta_i = base^(-2i/head_size). The dot product of a rotated query and key then depends only on
their distance, so attention sees relative positions without any learned table.

    >>> cos, sin = rotary_tables(block_size=8, head_size=4)
    >>> cos.shape
    torch.Size([8, 2])
    >>> q = torch.randn(1, 1, 8, 4)
    >>> apply_rotary(q, cos, sin).shape
    torch.Size([1, 1, 8, 4])
"""

from __future__ import annotations

import torch


def rotary_tables(block_size: int, head_size: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of pos * theta_i, each (block_size, head_size // 2), in fp32."""
    inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)
    angles = torch.arange(block_size, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of x (..., T, head_size) by angles whose cos/sin broadcast to (..., T, head_size // 2)."""
    x_even, x_odd = x[..., 0::2], x[..., 1::2]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    rotated = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)
    return rotated.flatten(-2)
