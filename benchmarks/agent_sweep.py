"""Tool-use fine-tuning settings for the agent stage, measured on the calibration split only (never
the evaluation split), for choosing params `agent:`.

    python benchmarks/agent_sweep.py --study default [--settings "study" "steps 400"]

Starts from results/<study>/models/<model>/sft/ckpt.pt (run the study first), fine-tunes a fresh
copy under each setting of `SETTINGS` (nextlab.agent.stage.train_and_run) and runs the loop on the
calibration split's questions, printing one row per setting: accuracy on seen people with the tool
and without, hallucination and abstention on never-seen names, tool calls per question, loops at
the step limit, replies cut off by the token budget, seconds. One thread.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

# name -> agent params overriding the study's (the first is the study's own setting).
SETTINGS = {
    "study": {},
    # The fine-tune split alone: its facts are mostly known, so the traces teach little reading.
    "no fresh people": {"fresh_people": 0},
    "no fresh people, steps 400": {"fresh_people": 0, "steps": 400},
    "no fresh people, lr 1e-3": {"fresh_people": 0, "lr": 1e-3},
    "fresh 400, steps 400": {"fresh_people": 400, "steps": 400},
    "fresh 400, lr 1e-3": {"fresh_people": 400, "lr": 1e-3},
    "fresh 1000, steps 400, lr 1e-3": {"fresh_people": 1000, "steps": 400, "lr": 1e-3},
    "fresh 1000, steps 600": {"fresh_people": 1000, "steps": 600},
    "fresh 1000, steps 1000": {"fresh_people": 1000, "steps": 1000},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="default")
    parser.add_argument("--model", default=None)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    torch.set_num_threads(1)

    import pandas as pd

    from nextlab.agent.stage import agent_metrics, episode_rows, train_and_run, training_examples
    from nextlab.agent.tools import lookup_records
    from nextlab.config import load_study
    from nextlab.data.world import World
    from nextlab.model.checkpoint import load_model
    from nextlab.qa.codec import QACodec
    from nextlab.qa.inputs import read_qa
    from nextlab.tokenizer import load_tokenizer

    study = load_study(Path("params") / f"{args.study}.yaml")
    results = Path("results") / study.study
    model_name = args.model or next(iter(study.models))
    qa = read_qa(results / "data" / "qa.parquet")
    world = World.load(results / "data" / "world.json")
    records = lookup_records(world)
    tok = load_tokenizer(results / "tokenizer" / "tokenizer.json")
    codec = QACodec(tok)
    calib = qa[qa["split"] == "calibration"].reset_index(drop=True)
    sft = results / "models" / model_name / "sft" / "ckpt.pt"
    print(f"study {study.study}, model {model_name}: calibration split {len(calib)} questions "
          f"({int((~calib['seen']).sum())} about never-seen names)")
    print("| setting | acc. with tool | acc. without | halluc. unseen, tool | abstain unseen, tool | tool calls/q "
          "| step limit | cut-off replies | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.settings:
        p = study.agent.model_copy(update=SETTINGS[name])
        examples = training_examples(world, qa[qa["split"] == "finetune"], records, codec, tok, p.fresh_people,
                                     study.seed)
        model, _ = load_model(sft, torch.device("cpu"))
        start = time.perf_counter()
        direct, with_tool, _, _ = train_and_run(model, tok, codec, examples, records, calib, p, study.seed)
        seconds = time.perf_counter() - start
        table = pd.DataFrame(episode_rows("no_tool", direct, calib) + episode_rows("tool", with_tool, calib))
        m = agent_metrics(table)
        cut = sum(not e.finished for e in with_tool) / len(with_tool)
        print(f"| {name} | {m['tool_acc']:.3f} | {m['no_tool_acc']:.3f} | {m.get('tool_halluc_unseen', float('nan')):.3f} "
              f"| {m.get('tool_abstain_unseen', float('nan')):.3f} | {m['tool_tool_calls']:.2f} | "
              f"{m['tool_hit_limit']:.3f} | {cut:.3f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
