"""Nondeterminism across batch sizes: measuring it, and a batch-invariant mode that removes it.

    from nextlab.nondeterminism import BatchInvariantGPT, batch_invariant

The torch-backed names load on first use, so the summary and the report (torch-free) stay light.
"""

from typing import Any

__all__ = ["AlignedKVCache", "BatchInvariantGPT", "batch_invariant"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nextlab.model import invariant

        return getattr(invariant, name)
    raise AttributeError(f"module 'nextlab.nondeterminism' has no attribute {name!r}")
