"""The positions experiment over several world seeds: does the order probe's ranking of the
variants survive another world, another initialisation and other windows?

    python benchmarks/positions_seeds.py --study default --seeds 1 2 3

For each seed: the data and tokenize stages in a temporary folder (the study's params with that
seed), then every variant of params `positions.variants` (nextlab.positions.stage.run, one
after another). Prints one row per seed and variant: the share of relations preferred in their
true direction (95% Wilson interval), the same on control pairs, fact recall, held-out loss and
seconds. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="default")
    parser.add_argument("--model", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from nextlab.config import load_study
    from nextlab.data.stage import run as run_data
    from nextlab.positions import stage as positions
    from nextlab.report.stats import wilson
    from nextlab.tokenizer.stage import Inputs as TokenizeInputs
    from nextlab.tokenizer.stage import run as run_tokenize

    torch.set_num_threads(args.threads)
    base = load_study(Path("params") / f"{args.study}.yaml")
    model = args.model or next(iter(base.models))
    print(f"study {base.study}, model {model}, {base.positions.steps} steps per variant, {args.threads} threads")
    print("| seed | variant | true direction [95%] | control | recall | held-out loss | s |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for seed in args.seeds:
        study = base.model_copy(update={"seed": seed})
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            run_data(study, None, root / "data")
            run_tokenize(study, TokenizeInputs(root / "data" / "corpus"), root / "tokenizer")
            for variant in study.positions.variants:
                start = time.perf_counter()
                out = root / "positions" / variant
                m = positions.run(study, positions.Inputs(tokens=root / "tokenizer", data=root / "data"), out,
                                  model=model, variant=variant)
                order = pd.read_parquet(out / "order.parquet")
                rel = order[order["kind"] == "relation"]
                lo, hi = wilson(int(rel["prefers_forward"].sum()), len(rel))
                print(f"| {seed} | {variant} | {m['order_relation_prefers_forward']:.2f} [{lo:.2f}, {hi:.2f}] | "
                      f"{m.get('order_control_prefers_forward', float('nan')):.2f} | {m['recall']:.3f} | "
                      f"{m.get('val_loss', float('nan')):.3f} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
