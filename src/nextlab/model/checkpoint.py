"""Checkpoints: one `torch.save`d dict of plain data and tensors, loadable with `weights_only=True`.

Layout (see docs/formats.md)::

    {"format": "nextlab-checkpoint", "version": 1,
     "model_config": {...GPTConfig...}, "model": state_dict,
     "optimizer": state_dict or None, "step": int, "rng": {name: tensor},
     "train_config": {...}, "tokenizer_hash": str, "extra": {...}}

Writes are atomic (temp file + rename), so an interrupted job leaves the previous checkpoint, never
half of a new one. Reading never unpickles arbitrary objects: a truncated, foreign or corrupt file
raises `InputFileError` naming the file.

    >>> import os, tempfile
    >>> model = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, d_model=16))
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.pt")
    >>> save_checkpoint(path, model, tokenizer_hash="ab12", step=100)
    >>> model, ckpt = load_model(path, device="cpu")
    >>> ckpt["format"], ckpt["version"], ckpt["step"], ckpt["tokenizer_hash"]
    ('nextlab-checkpoint', 1, 100, 'ab12')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from nextlab.errors import InputFileError, NextlabError
from nextlab.io import atomic_path
from nextlab.model.gpt import GPT, GPTConfig

FORMAT = "nextlab-checkpoint"
VERSION = 1
_REQUIRED = ("model_config", "model", "step", "tokenizer_hash")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under a `torch.compile` wrapper (its state dict has no `_orig_mod.` prefix)."""
    return getattr(model, "_orig_mod", model)


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    *,
    tokenizer_hash: str,
    step: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically. `extra` holds a stage's own plain-data fields."""
    model = unwrap(model)
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": model.config.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "rng": rng or {},
        "train_config": train_config or {},
        "tokenizer_hash": tokenizer_hash,
        "extra": extra or {},
    }
    # Through a file object: given a path, torch.save names the archive's records after the (random)
    # temporary file, and two identical checkpoints would differ in bytes.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(ckpt, f)


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint dict (tensors on `map_location`)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: checkpoint not found")
    if not path.is_file() or path.stat().st_size == 0:
        raise InputFileError(f"{path}: checkpoint is empty or not a regular file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # zip errors, pickle errors, EOF: all mean "not a checkpoint we wrote"
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise InputFileError(
            f"{path}: not a readable nextlab checkpoint (truncated, corrupt or foreign file: {reason})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputFileError(f"{path}: not a nextlab checkpoint (no format={FORMAT!r} field)")
    if ckpt.get("version") != VERSION:
        raise InputFileError(
            f"{path}: checkpoint version {ckpt.get('version')!r} is not supported (this nextlab reads {VERSION})"
        )
    missing = [key for key in _REQUIRED if key not in ckpt]
    if missing:
        raise InputFileError(f"{path}: checkpoint lacks {missing}")
    return ckpt


def model_from_checkpoint(
    ckpt: dict[str, Any], device: str | torch.device = "cpu", *, dtype: torch.dtype | None = None,
    **config_overrides: Any,
) -> GPT:
    """The model a checkpoint dict holds, on `device` (and in `dtype`), in eval mode.

    Built on the CPU and then moved, as every stage always did: the initialisation it overwrites
    still draws from the global RNG, so what a stage samples afterwards stays the same.
    `config_overrides` change fields that do not shape the weights (e.g. `attention="explicit"`).
    """
    model = GPT(GPTConfig.from_dict({**ckpt["model_config"], **config_overrides}))
    model.load_state_dict(ckpt["model"])
    return model.to(device=device, dtype=dtype).eval()


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[GPT, dict[str, Any]]:
    """The model of a checkpoint file, on `device` and in eval mode, and the checkpoint dict."""
    ckpt = read_checkpoint(path, map_location=device)
    try:
        model = model_from_checkpoint(ckpt)
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputFileError(f"{path}: model weights do not match its model_config ({err})") from None
    return model.to(device), ckpt


def check_compatible(
    ckpt: dict[str, Any],
    path: str | os.PathLike,
    *,
    tokenizer_hash: str | None = None,
    model_config: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
) -> None:
    """Raise `NextlabError` naming every difference between a checkpoint and the current run.

    Configs are compared on the keys given now, so a caller can pass only the keys that shape
    the result (e.g. not how often to log).
    """
    problems = []
    if tokenizer_hash is not None and ckpt["tokenizer_hash"] != tokenizer_hash:
        problems.append(
            f"tokenizer differs (checkpoint {ckpt['tokenizer_hash'][:12]}, now {tokenizer_hash[:12]})"
        )
    for name, now in (("model_config", model_config), ("train_config", train_config)):
        if now is None:
            continue
        then = ckpt.get(name) or {}
        diffs = [f"{k}: {then.get(k)!r} -> {now[k]!r}" for k in sorted(now) if then.get(k) != now[k]]
        if diffs:
            problems.append(f"{name} differs ({'; '.join(diffs)})")
    if problems:
        raise NextlabError(f"{path}: checkpoint was made by another run: " + "; ".join(problems))
