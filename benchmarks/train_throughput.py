"""Training throughput: tokens/s, ms/step, MFU and peak memory of the real training loop.

    python benchmarks/train_throughput.py                       # default study's models + nanoGPT CPU shape
    python benchmarks/train_throughput.py --threads 1 --steps 30
    python benchmarks/train_throughput.py --preset gpt2 --device cuda   # ~124M model, bf16 (GPU)

Shapes:
  default/<name>  each model of params/default.yaml, with its train.batch_size and the tokenizer's
                  vocab_size (random tokens: speed does not depend on the text)
  nanogpt-cpu     nanoGPT's CPU recipe (README, shakespeare_char): 4 layers, 4 heads, 128 dims,
                  block 64, batch 12, vocab 65, no dropout -- compare with nanoGPT's own
                  `python train.py config/train_shakespeare_char.py --device=cpu --compile=False
                  --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --dropout=0.0`
  gpt2            GPT-2 small: 12 layers, 12 heads, 768 dims, block 1024, vocab 50304, batch 8

It runs `nextlab.train.loop.train` itself (AdamW, schedule, clipping; no validation in between),
so the figures are what `nextlab train` reaches. The first step (warm-up) is not timed. MFU is
model FLOPs per token (6N + 12*L*d*T) x tokens/s over the device's peak: bf16 dense peak on a
known GPU, on the CPU an fp32 matmul probe at the same thread count (printed). Peak memory is
allocated tensors on CUDA and the whole process's peak RSS on the CPU (includes Python and torch).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nextlab.config import TrainParams, load_study  # noqa: E402
from nextlab.model import GPTConfig  # noqa: E402
from nextlab.model import device as dev  # noqa: E402
from nextlab.train.batches import TokenData  # noqa: E402
from nextlab.train.loop import new_state, train  # noqa: E402


def shapes(preset: str) -> list[tuple[str, GPTConfig, int]]:
    if preset == "gpt2":
        return [("gpt2-124M", GPTConfig(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, d_model=768), 8)]
    study = load_study(ROOT / "params" / "default.yaml")
    out = [(f"default/{name}", GPTConfig.from_params(m, study.tokenizer.vocab_size), study.train.batch_size)
           for name, m in study.models.items()]
    out.append(("nanogpt-cpu", GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, d_model=128), 12))
    return out


def bench(name: str, config: GPTConfig, batch_size: int, steps: int, device: torch.device, peak: float | None,
          compile_model: bool) -> dict:
    tokens = TokenData(np.random.default_rng(0).integers(0, config.vocab_size, 200_000).astype(np.int64), "random")
    params = TrainParams(steps=steps + 1, batch_size=batch_size, warmup_steps=1, eval_every=10**9,
                         checkpoint_every=10**9)
    state = new_state(config, params, seed=0, device=device)
    dev.reset_peak_memory(device)
    with tempfile.TemporaryDirectory() as tmp:
        out = train(state, tokens, None, params, checkpoint_path=Path(tmp) / "last.pt", tokenizer_hash="bench",
                    seed=0, compile_model=compile_model, peak_flops=peak, progress=False)
    return {
        "shape": name,
        "params_M": state.model.num_params() / 1e6,
        "tokens/step": batch_size * config.block_size,
        "tokens/s": out.tokens_per_s,
        "ms/step": out.ms_per_step,
        "MFU": out.mfu,
        "peak_mem_MB": dev.peak_memory_bytes(device) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per shape (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--preset", choices=["cpu", "gpt2"], default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile (CUDA only)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = dev.resolve_device(args.device)
    dev.setup_device(device)
    peak = dev.peak_flops(device)
    precision = "bf16 autocast" if dev.autocast_dtype(device) else "fp32"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; precision {precision}; peak {peak / 1e9 if peak else float('nan'):.1f} GFLOP/s"
          f"{' (fp32 matmul probe)' if device.type == 'cpu' else ''}; torch {torch.__version__}")
    header = f"{'shape':<16}{'params(M)':>10}{'tok/step':>10}{'tok/s':>11}{'ms/step':>10}{'MFU':>8}{'peak MB':>10}"
    print(header)
    print("-" * len(header))
    for shape, config, batch_size in shapes(args.preset):
        r = bench(shape, config, batch_size, args.steps, device, peak, args.compile)
        mfu = f"{100 * r['MFU']:.1f}%" if r["MFU"] is not None else "n/a"
        print(f"{r['shape']:<16}{r['params_M']:>10.3f}{r['tokens/step']:>10}{r['tokens/s']:>11.0f}"
              f"{r['ms/step']:>10.1f}{mfu:>8}{r['peak_mem_MB']:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
