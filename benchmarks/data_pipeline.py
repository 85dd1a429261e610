"""Throughput of the data and tokenize stages, the pipeline's no-op rerun time, and set-up time.

    python benchmarks/data_pipeline.py                    # data + tokenize throughput (default study)
    python benchmarks/data_pipeline.py --noop             # + no-op `snakemake` rerun in this project
    python benchmarks/data_pipeline.py --install          # + `make setup` in a fresh clone

Prints figures; asserts nothing (speed targets are not tests).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nextlab.config import load_study  # noqa: E402
from nextlab.data.stage import run as run_data  # noqa: E402
from nextlab.tokenizer.stage import Inputs as TokenizeInputs  # noqa: E402
from nextlab.tokenizer.stage import run as run_tokenize  # noqa: E402


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def stage_throughput(params: Path, repeats: int) -> None:
    study = load_study(params)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        data_times = timed(lambda: run_data(study, None, out / "data"), repeats)
        stats = run_data(study, None, out / "data")
        tok_times = timed(lambda: run_tokenize(study, TokenizeInputs(out / "data/corpus"), out / "tok"), repeats)
        tok = run_tokenize(study, TokenizeInputs(out / "data/corpus"), out / "tok")
    d, t = statistics.median(data_times), statistics.median(tok_times)
    chars = stats["train_chars"] + stats["val_chars"]
    tokens = tok["train_tokens"] + tok["val_tokens"]
    docs = stats["train_documents"] + stats["val_documents"]
    print(f"study {study.study}: {stats['people']} people, {docs} documents, {chars / 1e6:.2f} MB text, {tokens} tokens")
    print(f"data stage:     {d:6.2f} s median of {repeats}  ->  {docs / d:9.0f} documents/s  {chars / d / 1e6:6.2f} MB/s")
    print(f"tokenize stage: {t:6.2f} s median of {repeats}  ->  {tokens / t:9.0f} tokens/s     {chars / t / 1e6:6.2f} MB/s"
          " (BPE training + encoding)")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e['PATH']}"
    e.setdefault("DVC_NO_ANALYTICS", "1")
    return e


def noop_rerun(params: Path, repeats: int) -> None:
    cmd = ["snakemake", "--cores", "2", "--config", f"params={params.relative_to(ROOT)}"]
    print("bringing the study up to date first:", " ".join(cmd))
    subprocess.run(cmd, cwd=ROOT, env=env(), check=True, capture_output=True)
    times = timed(lambda: subprocess.run(cmd, cwd=ROOT, env=env(), check=True, capture_output=True), repeats)
    print(f"no-op snakemake rerun: {statistics.median(times):.2f} s median of {repeats} (min {min(times):.2f} s)")


def install_time() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        start = time.perf_counter()
        subprocess.run(["make", "setup"], cwd=clone, check=True, capture_output=True)
        first = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(["make", "setup"], cwd=clone, check=True, capture_output=True)
        second = time.perf_counter() - start
        shutil.rmtree(clone / ".venv", ignore_errors=True)
    print(f"make setup on a fresh clone: {first:.1f} s; again (nothing to do): {second:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=ROOT / "params" / "default.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--noop", action="store_true", help="also time a no-op snakemake rerun")
    parser.add_argument("--install", action="store_true", help="also time `make setup` in a fresh clone")
    args = parser.parse_args()
    stage_throughput(args.params.resolve(), args.repeats)
    if args.noop:
        noop_rerun(args.params.resolve(), args.repeats)
    if args.install:
        install_time()


if __name__ == "__main__":
    main()
