"""Token files and random training windows, nanoGPT-style.

A token file is a 1-D `.npy` array of concatenated `<|bos|> text <|eos|>` documents. A batch is
`batch_size` windows of `block_size + 1` tokens starting at random offsets: inputs are the first
`block_size`, targets the last `block_size` (the same window shifted by one). Offsets come from a
`torch.Generator`, whose state is a tensor a checkpoint can carry, so a resumed run draws exactly
the windows the uninterrupted run would have.

>>> data = TokenData(np.arange(100, dtype=np.uint16), "toy")
>>> g = torch.Generator().manual_seed(0)
>>> x, y = data.batch(4, 8, g)
>>> x.shape, bool((y[:, :-1] == x[:, 1:]).all())
(torch.Size([4, 8]), True)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from nextlab.errors import InputFileError, NextlabError


class TokenData:
    def __init__(self, tokens: np.ndarray, name: str):
        self.tokens = tokens
        self.name = name

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TokenData":
        """Memory-map a token file; a missing, corrupt or non-1-D file raises `InputFileError`."""
        path = Path(path)
        if not path.is_file():
            raise InputFileError(f"{path}: token file not found (run `nextlab tokenize` first)")
        try:
            tokens = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise InputFileError(f"{path}: not a readable .npy token file ({err})") from None
        if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
            raise InputFileError(f"{path}: expected a 1-D integer array, got {tokens.dtype} of shape {tokens.shape}")
        return cls(tokens, str(path))

    def __len__(self) -> int:
        return len(self.tokens)

    def max_id(self) -> int:
        return int(self.tokens.max()) if len(self.tokens) else -1

    def fits(self, block_size: int) -> bool:
        return len(self.tokens) >= block_size + 1

    def require_fits(self, block_size: int) -> None:
        if not self.fits(block_size):
            raise NextlabError(
                f"{self.name}: holds {len(self.tokens)} tokens, fewer than block_size + 1 = {block_size + 1}; "
                "lower the model's block_size or add data"
            )

    def batch(self, batch_size: int, block_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (batch_size, block_size) int64 on the CPU."""
        starts = torch.randint(len(self.tokens) - block_size, (batch_size,), generator=generator)
        windows = np.stack([self.tokens[s : s + block_size + 1] for s in starts.tolist()]).astype(np.int64)
        windows = torch.from_numpy(windows)
        return windows[:, :-1], windows[:, 1:]
