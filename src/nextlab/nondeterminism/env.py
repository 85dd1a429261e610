"""What a nondeterminism result depends on besides the code: the machine, its libraries, settings.

Bits of floating-point results change with the BLAS and its version, the CPU's vector units,
the GPU, TF32, the thread count and the attention kernel, so every result records them:

    >>> env = fingerprint(torch.device("cpu"), torch.float32)
    >>> env["threads"] == torch.get_num_threads(), env["cuda"] is None
    (True, True)
    >>> sorted(env)[:4]
    ['bf16_kernels', 'blas', 'cpu_capability', 'cpu_flags']
    >>> env["bf16_kernels"].split(" ")[0] in ("not", "unknown") or ":" in env["bf16_kernels"]   # e.g. brg_matmul:avx512_core_bf16
    True
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from typing import Any

import torch
from torch.nn import functional as F

# Vector-unit flags that decide which kernels a CPU BLAS may pick.
_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx_vnni",
              "amx_bf16", "amx_tile", "neon", "asimd", "sve")


def _cpu() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key in ("flags", "Features"):
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model, [f for f in _CPU_FLAGS if f in flags]


def _blas() -> list[str]:
    """The lines of torch's build configuration that name its BLAS, oneDNN, OpenMP and LAPACK."""
    lines = []
    for line in torch.__config__.show().splitlines():
        line = line.strip(" -")
        if line.startswith("Build settings"):
            lines += [item.strip() for item in line.split(",") if "BLAS_INFO" in item or "LAPACK_INFO" in item]
        elif any(n in line for n in ("Math Kernel", "OpenBLAS", "MKL-DNN", "oneDNN", "OpenMP", "LAPACK", "cuDNN")):
            lines.append(line)
    return lines


def sdpa_backend(device: torch.device, dtype: torch.dtype, masked: bool) -> str:
    """The fused attention kernel torch picks for a small (2, 2, 8, 16) call on this device."""
    q = torch.zeros(2, 2, 8, 16, device=device, dtype=dtype)
    mask = torch.ones(2, 1, 8, 8, dtype=torch.bool, device=device) if masked else None
    try:
        choice = torch._fused_sdp_choice(q, q, q, attn_mask=mask, is_causal=not masked)
        return torch.nn.attention.SDPBackend(choice).name
    except Exception as err:  # a private API: record that it could not be asked, never fail
        return f"unknown ({type(err).__name__})"


def matmul_kernel(dtype: torch.dtype) -> dict[str, str]:
    """Which CPU kernel a (8 x 128) @ (128 x 384) product of `dtype` actually runs, read from oneDNN's
    verbose log: e.g. `brg_matmul:avx512_core_bf16` (native avx512_bf16), `..._amx` (AMX), or
    `not oneDNN` (torch's own or the BLAS's kernel: for bf16 that is the fp32-converting fallback)."""
    if not torch.backends.mkldnn.is_available():
        return {"isa": "no oneDNN", "matmul": "not oneDNN"}
    a, w = torch.ones(8, 128, dtype=dtype), torch.ones(384, 128, dtype=dtype)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as log:
        os.dup2(log.fileno(), 1)  # oneDNN writes its log to the process's stdout, below Python
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                F.linear(a, w)
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        lines = log.read().splitlines()
    isa = next((line.split("isa:", 1)[1] for line in lines if ",isa:" in line), "unknown")
    impl = next((line.split(",")[6] for line in lines if ",primitive,exec," in line and ",matmul," in line),
                "not oneDNN")
    return {"isa": isa, "matmul": impl}


def fingerprint(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    model, flags = _cpu()
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_model": model,
        "cpu_flags": flags,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": _blas(),
        "mkl": torch.backends.mkl.is_available(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "sdpa_backend_causal": sdpa_backend(device, dtype, masked=False),
        "sdpa_backend_masked": sdpa_backend(device, dtype, masked=True),
        "cuda": None,
    }
    if device.type == "cpu":
        # The bf16 path decides how bf16 results round: native avx512_bf16 / AMX products or a
        # conversion to fp32 and back; recorded for every job, whatever its dtype.
        try:
            bf16 = matmul_kernel(torch.bfloat16)
            env["bf16_kernels"] = f"{bf16['matmul']} (oneDNN isa: {bf16['isa']})"
            env["matmul_kernel"] = matmul_kernel(dtype)["matmul"]
        except Exception as err:  # a diagnostic: never fail the job for it
            env["bf16_kernels"] = env["matmul_kernel"] = f"unknown ({type(err).__name__})"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["cuda"] = {
            "gpu": props.name,
            "capability": f"{props.major}.{props.minor}",
            "cuda_version": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "cublas_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "bf16_reduced_precision_reduction": torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
            "fp16_reduced_precision_reduction": torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
            "flash_sdp": torch.backends.cuda.flash_sdp_enabled(),
            "mem_efficient_sdp": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "math_sdp": torch.backends.cuda.math_sdp_enabled(),
        }
    return env


def dtype_runs(device: torch.device, dtype: torch.dtype) -> str | None:
    """None if a tiny linear + layer norm + attention runs in `dtype` on `device`, else why not."""
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return f"{torch.cuda.get_device_name(device)} has no bfloat16 support"
    try:
        x = torch.ones(2, 4, 8, device=device, dtype=dtype)
        y = F.layer_norm(F.linear(x, torch.ones(8, 8, device=device, dtype=dtype)), (8,))
        F.scaled_dot_product_attention(y[:, None], y[:, None], y[:, None], is_causal=True)
    except (RuntimeError, NotImplementedError) as err:
        return str(err).splitlines()[0][:200]
    return None
