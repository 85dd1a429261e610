"""Cost of the batch-invariant mode: greedy decoding speed of the default path and of
`BatchInvariantGPT` per batch size, and their ratio (the goal: <= 1.3x slower at every batch size from 1 to 64).

    python benchmarks/batch_invariance.py                        # default study's model shape, random init
    python benchmarks/batch_invariance.py --ckpt results/default/models/small/sft/ckpt.pt
    python benchmarks/batch_invariance.py --dtype bfloat16 --threads 2 --batch-sizes 1 8 64

Each batch size decodes `--new-tokens` tokens after prompts of 12..29 tokens (the length of the
study's QA prompts) with `nextlab.generate.generate` (left padding, KV cache, end-of-text off, so
every row produces every token). Reported per path: generation tokens/s (all rows' new tokens /
wall seconds, prefill included), and separately the ms of one prefill and of one decode step. Each
speed is the best of `--repeats` runs (the least disturbed by other processes on a shared
machine); the two paths' generation runs take turns, and the slowdown is the median over those
turns of invariant seconds / default seconds, so a burst of load that hits one path's runs does not
decide the ratio. Also checks, once per batch size, that the invariant mode's completion of row 0 equals
its completion alone. Prints figures; asserts nothing (speed targets are not tests).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nextlab.generate import generate, pad  # noqa: E402
from nextlab.model import GPT, GPTConfig  # noqa: E402
from nextlab.nondeterminism import BatchInvariantGPT  # noqa: E402
from nextlab.nondeterminism.env import fingerprint  # noqa: E402


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each function's runs, the functions taking turns `repeats` times."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@torch.no_grad()
def step_times(model, prompts: list[list[int]], repeats: int) -> tuple[float, float]:
    """ms of one prefill of the batch, and of one decode step after it."""
    idx, mask = pad(prompts, left=True)
    prefill = best(lambda: model(idx, attention_mask=mask, use_cache=True), repeats)
    logits, past = model(idx, attention_mask=mask, use_cache=True)
    token = logits[:, -1].argmax(-1, keepdim=True)
    grown = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    if isinstance(model, BatchInvariantGPT):
        # its cache is updated in place: rewind it before each timed step
        seen, lengths = past.seen, past.lengths.clone()

        def step():
            past.seen, past.lengths = seen, lengths.clone()
            model(token, attention_mask=grown, past_kv=past, use_cache=True)
    else:
        def step():
            model(token, attention_mask=grown, past_kv=past, use_cache=True)
    return prefill * 1e3, best(step, repeats) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, help="a nextlab checkpoint (default: random init, default shape)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 3, 4, 8, 12, 16, 32, 64])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    if args.ckpt:
        from nextlab.model.checkpoint import load_model

        model, _ = load_model(args.ckpt)
    else:
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=1024, block_size=128, n_layer=4, n_head=4, d_model=128))
    model = model.to(dtype).eval()
    invariant = BatchInvariantGPT(model)
    vocab = model.config.vocab_size
    rng = random.Random(0)
    pool = [[0] + [rng.randrange(6, vocab) for _ in range(rng.randrange(11, 29))] for _ in range(max(args.batch_sizes))]
    env = fingerprint(torch.device("cpu"), dtype)
    from nextlab.model import kernels

    attention = (f"fused SDPA, {kernels.fused_columns(dtype)} query column(s) per call"
                 if invariant.fused_kernel(dtype, torch.device("cpu")) else "explicit block kernel")
    print(f"torch {env['torch']}, {env['cpu_model']} ({env['cpu_capability']}), threads {torch.get_num_threads()}, "
          f"{args.dtype}, model {model.config.n_layer}x{model.config.d_model}, {args.new_tokens} new tokens; "
          f"invariant attention: {attention}")
    env["invariant_attention"] = attention
    header = (f"{'batch':>5} | {'default tok/s':>13} {'invariant tok/s':>15} {'slowdown':>8} | "
              f"{'prefill ms def/inv':>18} | {'decode step ms def/inv':>22} | invariant row 0 = alone")
    print(header)
    print("-" * len(header))
    rows = []
    for b in args.batch_sizes:
        prompts = pool[:b]
        row = {"batch_size": b}
        paths = {"default": model, "invariant": invariant}
        for m in paths.values():
            generate(m, prompts, 2, eos_id=None)  # warm up
        # The two paths take turns, so a burst of load from other processes falls on both alike;
        # the slowdown is the median of the paired ratios, each path's speed its best run.
        runs = interleaved({name: (lambda m=m: generate(m, prompts, args.new_tokens, eos_id=None))
                            for name, m in paths.items()}, args.repeats)
        for name, m in paths.items():
            row[f"{name}_tokens_per_s"] = b * args.new_tokens / min(runs[name])
            row[f"{name}_prefill_ms"], row[f"{name}_decode_step_ms"] = step_times(m, prompts, args.repeats)
        row["slowdown"] = statistics.median(i / d for d, i in zip(runs["default"], runs["invariant"]))
        alone = generate(invariant, prompts[:1], args.new_tokens, eos_id=None).tokens[0]
        row["invariant_equal_alone"] = generate(invariant, prompts, args.new_tokens, eos_id=None).tokens[0] == alone
        rows.append(row)
        print(f"{b:>5} | {row['default_tokens_per_s']:>13.0f} {row['invariant_tokens_per_s']:>15.0f} "
              f"{row['slowdown']:>7.2f}x | {row['default_prefill_ms']:>8.2f} / {row['invariant_prefill_ms']:<7.2f} | "
              f"{row['default_decode_step_ms']:>10.2f} / {row['invariant_decode_step_ms']:<9.2f} | "
              f"{row['invariant_equal_alone']}")
    if args.json:
        args.json.write_text(json.dumps({"env": env, "args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
