"""Nondeterminism across batch sizes: measuring it, and a batch-invariant mode that removes it.

    from nextlab.nondeterminism import BatchInvariantGPT, batch_invariant
"""

from nextlab.nondeterminism.invariant import AlignedKVCache, BatchInvariantGPT, batch_invariant

__all__ = ["AlignedKVCache", "BatchInvariantGPT", "batch_invariant"]
