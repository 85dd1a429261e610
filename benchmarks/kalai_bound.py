"""Kalai et al.'s bound on a study's pretrained model: calibration of the fact value inside fresh
biographies, and the forced-answer error on facts seen once beside the singleton rate.

    python benchmarks/kalai_bound.py --study default [--model small] [--bins 10] [--boot 1000]

Reads results/<study>/models/<model>/pretrain/ckpt.pt, the data stage's world.json,
corpus/val.jsonl and stats.json and the tokenizer (no training); prints the figures with 95%
bootstrap intervals over facts, the reliability table, and whether forced error >= singleton rate
- ECE holds (`nextlab.evaluate.kalai`). One thread: it shares the machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="default")
    parser.add_argument("--model", default=None)
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from nextlab.data.stage import read_jsonl
    from nextlab.data.world import World
    from nextlab.evaluate.kalai import bound_summary, reliability_table, value_candidates
    from nextlab.io import read_json
    from nextlab.model.checkpoint import load_model
    from nextlab.tokenizer import load_tokenizer

    results = Path("results") / args.study
    models = sorted(p.name for p in (results / "models").iterdir())
    model_name = args.model or models[0]
    world = World.load(results / "data" / "world.json")
    docs = read_jsonl(results / "data" / "corpus" / "val.jsonl")
    stats = read_json(results / "data" / "stats.json")
    tok = load_tokenizer(results / "tokenizer" / "tokenizer.json")
    model, _ = load_model(results / "models" / model_name / "pretrain" / "ckpt.pt", torch.device("cpu"))
    start = time.perf_counter()
    rows = value_candidates(model, tok, docs, {p.person_id: p.mentions for p in world.people}, world.vocabularies)
    s = bound_summary(rows, stats["singleton_rate"], args.bins, args.boot, args.seed)
    print(f"study {args.study}, model {model_name}: {int(s['facts'])} facts in fresh biographies "
          f"({time.perf_counter() - start:.1f} s)")
    print("| figure | value | 95% interval |\n|---|---:|---|")
    for key, label in (("ece", "ECE of the forced answer's probability (all facts)"),
                       ("forced_error_k1", f"forced-answer error, facts seen once (n = {int(s['facts_k1'])})"),
                       ("forced_error_all", f"forced-answer error, all seen facts (n = {int(s['facts_all'])})")):
        print(f"| {label} | {s[key]:.3f} | [{s[key + '_lo']:.3f}, {s[key + '_hi']:.3f}] |")
    print(f"| mean confidence of the forced answer | {s['mean_confidence']:.3f} | |")
    print(f"| singleton rate | {s['singleton_rate']:.3f} | (counted) |")
    print(f"| bound: singleton rate - ECE | {s['bound']:.3f} | |")
    print(f"\nbound holds (forced error on all facts >= singleton rate - ECE): {bool(s['bound_holds'])}")
    print("\nreliability (all facts, equal-width bins):")
    print(reliability_table(rows, args.bins).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nby mention count:")
    print(rows.groupby("mentions").agg(facts=("correct", "size"), forced_error=("correct", lambda c: 1 - c.mean()),
                                       mean_confidence=("confidence", "mean")).to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
