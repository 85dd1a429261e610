"""How a study's cost grows: wall time and peak memory of each stage against the world's size, and
of training against the model's size.

    python benchmarks/scaling.py                              # worlds of 400, 800, 1600, 3200 people
    python benchmarks/scaling.py --people 400 800 --out /tmp/scaling
    python benchmarks/scaling.py --figure /tmp/scaling.png

Each world runs the stages one after another through their real commands (`nextlab data`, ...,
`nextlab evaluate`), in a temporary folder, from `params/default.yaml` with `data.n_people` (and
`data.n_unseen`, half of it) scaled and everything else fixed: the model's shape and the steps of
pretraining, fine-tuning and post-training do not change with the world (`--train-steps`,
`--posttrain-steps` shorten them for the benchmark's sake; a step costs the same at any world
size). Wall seconds and peak RSS are the process's own (`os.wait4`), so they include start-up.
The exponent per stage is the least-squares slope of log(seconds) against log(people): 1 is
linear, 0 is a fixed cost. Then `train` for two or three model widths on the smallest world.
Prints figures (and draws the figure); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGES = ["data", "tokenize", "train", "sft", "posttrain", "evaluate", "mechanisms"]


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one command, or exit with its error."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{err[-3000:]}")
    return wall, usage.ru_maxrss / 1024


def params_for(people: int, train_steps: int, posttrain_steps: int, d_model: int | None = None) -> dict:
    params = yaml.safe_load((ROOT / "params" / "default.yaml").read_text())
    params["study"] = f"scaling{people}"
    params["data"]["n_people"] = people
    params["data"]["n_unseen"] = people // 2
    params["train"].update(steps=train_steps, warmup_steps=min(50, train_steps), eval_every=train_steps,
                           checkpoint_every=10 * train_steps)
    params["posttrain"]["steps"] = posttrain_steps
    params["tracking"] = {"enabled": False}
    if d_model:
        params["models"]["small"]["d_model"] = d_model
    return params


def run_world(root: Path, people: int, args: argparse.Namespace, env: dict[str, str],
              stages: list[str], d_model: int | None = None) -> dict[str, tuple[float, float]]:
    folder = root / (f"n{people}" + (f"-d{d_model}" if d_model else ""))
    folder.mkdir(parents=True, exist_ok=True)
    params = folder / "params.yaml"
    params.write_text(yaml.safe_dump(params_for(people, args.train_steps, args.posttrain_steps, d_model)))
    r = folder / "results"
    common = ["--params", str(params), "--threads"]
    commands = {
        "data": ["data", *common, "1", "--out", str(r / "data")],
        "tokenize": ["tokenize", *common, "1", "--data", str(r / "data"), "--out", str(r / "tokenizer")],
        "train": ["train", *common, "2", "--model", "small", "--tokens", str(r / "tokenizer"), "--data",
                  str(r / "data"), "--out", str(r / "pretrain")],
        "sft": ["sft", *common, "2", "--model", "small", "--init", str(r / "pretrain/ckpt.pt"), "--data",
                str(r / "data"), "--tokenizer", str(r / "tokenizer"), "--out", str(r / "sft")],
        "posttrain": ["posttrain", *common, "1", "--model", "small", "--scheme", "binary", "--seed", "1", "--init",
                      str(r / "sft/ckpt.pt"), "--data", str(r / "data"), "--tokenizer", str(r / "tokenizer"),
                      "--out", str(r / "posttrain")],
        "evaluate": ["evaluate", *common, "1", "--model", "small", "--scheme", "none", "--seed", "0", "--ckpt",
                     str(r / "sft/ckpt.pt"), "--data", str(r / "data"), "--tokenizer", str(r / "tokenizer"),
                     "--out", str(r / "evaluate")],
        "mechanisms": ["mechanisms", *common, "1", "--model", "small", "--pretrain", str(r / "pretrain/ckpt.pt"),
                       "--sft", str(r / "sft/ckpt.pt"), "--data", str(r / "data"), "--tokenizer",
                       str(r / "tokenizer"), "--out", str(r / "mechanisms")],
    }
    out = {}
    for stage in stages:
        out[stage] = timed([str(BIN / "nextlab"), *commands[stage]], folder, env)
        print(f"  n={people}{f' d={d_model}' if d_model else ''} {stage}: {out[stage][0]:.1f} s, "
              f"{out[stage][1]:.0f} MB", flush=True)
    tokens = json.loads((r / "tokenizer" / "stats.json").read_text())["train_tokens"]
    out["tokens"] = (tokens, 0.0)
    return out


def exponent(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) on log(size).

    >>> round(exponent([1, 2, 4], [3.0, 6.0, 12.0]), 6)
    1.0
    """
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def draw(path: Path, sizes: list[int], results: dict[int, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for stage in STAGES:
        ax.plot(sizes, [results[n][stage][0] for n in sizes], marker="o", label=stage)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("people in the world")
    ax.set_ylabel("wall seconds (one job, start-up included)")
    ax.set_title("Cost of each stage against the world's size")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, nargs="+", default=[400, 800, 1600, 3200])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256], help="d_model of the train sweep")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--posttrain-steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--figure", type=Path, default=None, help="also draw the figure here")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="nextlab-scaling-"))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONHASHSEED="0",
               NEXTLAB_TRACKING_OFF="benchmark")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"cpu: {cpu}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}; work folder {root}")
    results = {n: run_world(root, n, args, env, STAGES) for n in args.people}
    print("\n| stage | " + " | ".join(f"{n} people" for n in args.people) + " | exponent | peak MB at the largest |")
    print("|---|" + "---:|" * (len(args.people) + 2))
    for stage in STAGES:
        seconds = [results[n][stage][0] for n in args.people]
        print(f"| {stage} | " + " | ".join(f"{s:.1f}" for s in seconds)
              + f" | {exponent(args.people, seconds):.2f} | {results[args.people[-1]][stage][1]:.0f} |")
    print("| training tokens | " + " | ".join(f"{results[n]['tokens'][0]:,}" for n in args.people) + " | | |")
    print(f"\n| d_model | train s ({args.train_steps} steps, {args.people[0]} people) | peak MB |\n|---:|---:|---:|")
    for width in args.widths:
        t = run_world(root, args.people[0], args, env, ["data", "tokenize", "train"], d_model=width)["train"]
        print(f"| {width} | {t[0]:.1f} | {t[1]:.0f} |")
    if args.figure:
        draw(args.figure, args.people, results)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
