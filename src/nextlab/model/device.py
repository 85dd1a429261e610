"""Where and in which precision a model runs, and how fast that device can go.

`auto` picks CUDA when present (bf16 autocast, TF32 matmuls) and otherwise the CPU in fp32 (see
docs/architecture.md, "Compute"): on a CPU, bf16 is a factor of the nondeterminism study, not a
training dtype, since on CPUs without native bf16 its matmuls measured far slower than fp32.
With `cpu` no CUDA function is touched at all; with `auto` only `torch.cuda.is_available()`.

>>> resolve_device("cpu")
device(type='cpu')
>>> autocast_dtype(torch.device("cpu")) is None
True
"""

from __future__ import annotations

import contextlib
import functools
import time

import torch

from nextlab.errors import NextlabError

# Dense bf16 peak FLOP/s of common accelerators (no sparsity), for MFU on CUDA.
GPU_PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
    "V100": 125e12,
    "T4": 65e12,
}


def resolve_device(name: str) -> torch.device:
    """`auto`, `cpu` or `cuda` -> a torch device; `cuda` without a GPU is an error."""
    if name == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if name == "cuda" and not available:
        raise NextlabError("device: 'cuda' was asked for but no CUDA device is available")
    if name not in ("auto", "cuda"):
        raise NextlabError(f"device: got {name!r}; allowed: auto, cpu, cuda")
    return torch.device("cuda") if available else torch.device("cpu")


def setup_device(device: torch.device) -> None:
    """Process-wide settings for fast training on `device` (TF32 on CUDA; nothing on the CPU)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    return torch.bfloat16 if device.type == "cuda" else None


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, a no-op on the CPU (fp32 there)."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so wall-clock timings mean something (CUDA is asynchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host batch on `device`: on CUDA through pinned memory without blocking the host, so the
    next batch is built while the device computes; on the CPU, the tensor itself."""
    if device.type != "cuda":
        return batch
    return batch.pin_memory().to(device, non_blocking=True)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory: allocated tensors on CUDA, the process's resident set size on the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    # ru_maxrss is KiB on Linux.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@functools.cache
def measure_cpu_flops(size: int = 512, seconds: float = 0.3) -> float:
    """fp32 matmul FLOP/s this process reaches now with its torch threads: the CPU 'peak' for MFU.

    Measured once per process (best of repeated 512^3 matmuls over ~0.3 s), so MFU reads as the
    fraction of what a dense matmul achieves on this machine under its current load.
    """
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.mm(a, b)  # warm-up: thread pool, caches
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        elapsed = time.perf_counter() - start
        best = max(best, 2 * size**3 / elapsed)
    return best


def peak_flops(device: torch.device, cpu_peak_flops: float | None = None) -> float | None:
    """Peak FLOP/s for MFU: bf16 table on CUDA (None for an unknown GPU), the param or a probe on CPU."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, flops in GPU_PEAK_BF16.items():
            if key in name:
                return flops
        return None
    return cpu_peak_flops or measure_cpu_flops()
