"""Does pretraining give the same bits every time? The same train job, run again and again in fresh
processes.

    python benchmarks/repeat_train.py --params params/smoke.yaml --runs 100 --threads 2
    python benchmarks/repeat_train.py --params params/smoke.yaml --runs 12 --threads 2 --load

Data and tokenizer are made once (as the study's jobs make them, tracking off), then `nextlab
train` runs `--runs` times, each in a new process with a fresh output folder. Every run's loss curve
and checkpoint are hashed; the table counts the runs per distinct result and, for a result that
differs from the most common one, the first step whose loss differs. `--load` keeps a busy process
running on one core meanwhile (a second job, as Snakemake runs two side by side). The CPU model and
flags are printed with the figures: a result holds for the machine it was measured on. This is the
standalone half of the fresh-run check of `tests/test_reliability.py` (which runs whole studies).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch

from nextlab.config import job_sections, load_study
from nextlab.nondeterminism.env import fingerprint

BIN = Path(sys.executable).parent


def nextlab(*argv: str) -> None:
    subprocess.run([str(BIN / "nextlab"), *argv], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})


def losses(curve: Path) -> list[tuple[str, str]]:
    """(step, training loss) per row of a loss curve, as written (the exact digits)."""
    with open(curve, newline="") as f:
        return [(row["step"], row["train_loss"]) for row in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params/smoke.yaml")
    parser.add_argument("--model", help="a model of the params (default: the first)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--load", action="store_true", help="a busy process on one core meanwhile")
    args = parser.parse_args()

    study = load_study(args.params)
    study = study.model_copy(update={"tracking": study.tracking.model_copy(update={"enabled": False})})
    model = args.model or next(iter(study.models))

    def job(*sections: str, **kw) -> str:
        """The `--job` JSON the workflow passes to the stage (`workflow/rules/common.smk`)."""
        return json.dumps(job_sections(study, *sections, **kw), sort_keys=True)

    env = fingerprint(torch.device("cpu"), torch.float32)
    print(f"CPU: {env.get('cpu_model')} ({' '.join(env.get('cpu_flags', []))}); threads {args.threads}")

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.load else None
    results: list[tuple[str, list[tuple[str, str]]]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="nextlab-repeat-") as tmp:
            root = Path(tmp)
            nextlab("data", "--job", job("study", "seed", "data", "tracking"), "--out", str(root / "data"))
            nextlab("tokenize", "--job", job("study", "seed", "tokenizer", "tracking"),
                    "--data", str(root / "data"), "--out", str(root / "tokenizer"))
            train_job = job("study", "seed", "train", "tracking", models=[model])
            for i in range(args.runs):
                out = root / f"run{i}"
                nextlab("train", "--job", train_job, "--threads", str(args.threads), "--model", model,
                        "--tokens", str(root / "tokenizer"), "--out", str(out))
                digest = hashlib.sha256((out / "curve.csv").read_bytes() + (out / "ckpt.pt").read_bytes())
                results.append((digest.hexdigest()[:12], losses(out / "curve.csv")))
                print(f"run {i + 1}/{args.runs}: {results[-1][0]}", file=sys.stderr)
    finally:
        if busy is not None:
            busy.kill()

    counts = Counter(digest for digest, _ in results)
    common, _ = counts.most_common(1)[0]
    reference = next(curve for digest, curve in results if digest == common)
    print(f"\n{counts[common]} of {len(results)} runs identical (loss curve and checkpoint bytes)")
    print("| result | runs | first step whose loss differs |\n|---|---:|---|")
    for digest, n in counts.most_common():
        curve = next(c for d, c in results if d == digest)
        row = next((i for i, (a, b) in enumerate(zip(curve, reference)) if a != b), None)
        where = "—" if row is None else f"{curve[row][0]} ({reference[row][1]} vs {curve[row][1]})"
        print(f"| {digest} | {n} | {where} |")


if __name__ == "__main__":
    main()
