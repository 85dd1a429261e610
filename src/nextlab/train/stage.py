"""The train stage as a function of files in, files out: `run(study, Inputs(tokens, data), out,
model=name)`.

In: the tokenize stage's folder (`tokenizer.json`, `train.npy`, `val.npy`, `stats.json`) and,
for the fact probes, the data stage's folder (`world.json`, `corpus/val.jsonl`, `qa.parquet`).
Out (one folder per model): `ckpt.pt`, `metrics.json`, `curve.csv`, `loss.png`, `facts.csv`,
`provenance.json`, and the run's speed in `timing.json` and `timing.csv`. While training,
`last.pt` holds the latest resumable state; a rerun resumes from it (unless `fresh`) and it is
removed once `ckpt.pt` is written.

Every input is checked before the first step: a bad file or a mismatched checkpoint raises a
`NextlabError` that names it.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from nextlab.config import Study
from nextlab.errors import InputFileError, NextlabError
from nextlab.io import atomic_path, read_json, require_file, sha256_file, write_json
from nextlab.model import GPT, GPTConfig
from nextlab.model import device as dev
from nextlab.model.checkpoint import check_compatible, read_checkpoint
from nextlab.provenance import data_hash_of, provenance
from nextlab.train import distributed
from nextlab.train.batches import TokenData
from nextlab.train.loop import TrainState, final_checkpoint, new_state, resume_state, train, trajectory_config

log = logging.getLogger(__name__)

# The curve is what training computed; how fast each step ran lives apart (it differs run to run).
CURVE_COLUMNS = ("step", "lr", "train_loss", "val_loss")
TIMING_COLUMNS = ("step", "tokens_per_s")


def tokenizer_hash(tokens_dir: Path) -> str:
    """The tokenize stage's `tokenizer_hash`, or the same hash of tokenizer.json if stats lack it."""
    stats = tokens_dir / "stats.json"
    if stats.is_file():
        value = read_json(stats).get("tokenizer_hash")
        if value:
            return str(value)
    return sha256_file(require_file(tokens_dir / "tokenizer.json", "tokenizer"))[:16]


@dataclass(frozen=True)
class Inputs:
    """The folders the stage reads."""

    tokens: Path  # the tokenize stage's folder
    data: Path | None = None  # the data stage's folder, for the fact probes; None skips them


@dataclass
class TrainInputs:
    """Everything the stage reads, loaded and checked."""

    config: GPTConfig
    train: TokenData
    val: TokenData | None
    tokenizer: Any
    tokenizer_hash: str
    data_hash: str | None
    probe: dict[str, Any] | None  # docs, mentions, qa for the fact probes


def load_inputs(study: Study, model_name: str, tokens_dir: Path, data_dir: Path | None) -> TrainInputs:
    from nextlab.tokenizer import load_tokenizer

    if model_name not in study.models:
        raise NextlabError(f"models.{model_name}: no such model in params; defined: {sorted(study.models)}")
    tokenizer = load_tokenizer(tokens_dir / "tokenizer.json")
    vocab_size = tokenizer.get_vocab_size()
    config = GPTConfig.from_params(study.models[model_name], vocab_size)
    train_data = TokenData.load(tokens_dir / "train.npy")
    train_data.require_fits(config.block_size)
    val_data: TokenData | None = TokenData.load(tokens_dir / "val.npy")
    if not val_data.fits(config.block_size):
        log.warning("%s: %d tokens, fewer than block_size + 1: no validation loss", val_data.name, len(val_data))
        val_data = None
    for data in (train_data, val_data):
        if data is not None and data.max_id() >= vocab_size:
            raise InputFileError(
                f"{data.name}: holds token id {data.max_id()}, beyond the tokenizer's {vocab_size} ids; "
                "token files and tokenizer.json come from different runs"
            )

    probe = None
    data_hash = None
    if data_dir is not None:
        from nextlab.data.stage import read_jsonl
        from nextlab.data.world import World

        world = World.load(data_dir / "world.json")
        val_path = require_file(data_dir / "corpus" / "val.jsonl", "validation corpus")
        try:
            docs = read_jsonl(val_path)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputFileError(f"{val_path}: not JSON lines ({err})") from None
        qa_path = require_file(data_dir / "qa.parquet", "QA table")
        try:
            qa = pd.read_parquet(qa_path)
        except Exception as err:
            raise InputFileError(f"{qa_path}: not a readable parquet file ({err})") from None
        missing = {"question_id", "question", "answer", "mentions", "split", "seen"} - set(qa.columns)
        if missing:
            raise InputFileError(f"{qa_path}: lacks columns {sorted(missing)}")
        probe = {"docs": docs, "mentions": {p.person_id: p.mentions for p in world.people}, "qa": qa}
        data_hash = data_hash_of(data_dir, required=False)
    return TrainInputs(config, train_data, val_data, tokenizer, tokenizer_hash(tokens_dir), data_hash, probe)


def write_curve(path: Path, curve: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in curve:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})


def start_state(study: Study, loaded: TrainInputs, last: Path, device: torch.device, ranks: distributed.Ranks,
                *, fresh: bool) -> TrainState:
    """Where training starts: the run a previous job left in `last` (when it was made with the same
    tokenizer, model and trajectory params), or a fresh seeded model (`fresh`: always)."""
    if ranks.is_main:
        if fresh and last.exists():
            last.unlink()
        # A kill -9 mid-write leaves the atomic writer's temp file behind; the rename never happened.
        for stale in last.parent.glob(f".{last.name}.*.tmp") if last.parent.is_dir() else ():
            stale.unlink()
    distributed.barrier(ranks)  # every rank decides on resuming from the same files
    if not last.exists():
        return new_state(loaded.config, study.train, study.seed, device)
    ckpt = read_checkpoint(last)
    try:
        check_compatible(ckpt, last, tokenizer_hash=loaded.tokenizer_hash, model_config=loaded.config.to_dict(),
                         train_config=trajectory_config(study.train, study.seed))
    except NextlabError as err:
        raise NextlabError(f"{err}. Delete it or pass --fresh to start over") from None
    state = resume_state(ckpt, study.train, device)
    log.info("resuming from %s at step %d", last, state.step)
    return state


def probe_facts(gpt: GPT, loaded: TrainInputs, path: Path) -> dict[str, Any]:
    """What the trained model recalls, by how often each fact was seen: `facts.csv` at `path`, and
    its flat metrics."""
    from nextlab.train.facts import bio_fact_rows, by_mentions, flat_metrics, qa_rows

    bio = bio_fact_rows(gpt, loaded.tokenizer, loaded.probe["docs"], loaded.probe["mentions"])
    qa = qa_rows(gpt, loaded.tokenizer, loaded.probe["qa"])
    table = by_mentions(bio, qa)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    log.info("fact accuracy by mention count:\n%s", table.to_string(index=False))
    return flat_metrics(table, bio, qa)


def run(
    study: Study,
    inputs: Inputs,
    out: str | Path,
    *,
    model: str,
    fresh: bool = False,
    progress: bool | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train `study.models[model]`; write the stage's files into `out`; return the metrics it wrote
    to metrics.json (on a data-parallel run's other ranks, which write nothing: steps and loss).

    `metrics.json` holds what the run computed (the same numbers every run with the same params
    and seed); `timing.json` and `timing.csv` hold how fast it went, which differs run to run.
    `on_step(row)` sees every curve row as it is recorded (a resumed run replays the rows so far).
    """
    from nextlab.train.plot import plot_loss

    params = study.train
    ranks = distributed.Ranks.from_env()
    ranks.check_batch(params.batch_size)
    model_name, tokens_dir, out = model, Path(inputs.tokens), Path(out)
    data_dir = Path(inputs.data) if inputs.data is not None else None
    loaded = load_inputs(study, model_name, tokens_dir, data_dir)
    device = distributed.init(ranks, dev.resolve_device(study.device))
    dev.setup_device(device)
    last = out / "last.pt"
    state = start_state(study, loaded, last, device, ranks, fresh=fresh)
    peak = dev.peak_flops(device, params.cpu_peak_flops)
    out.mkdir(parents=True, exist_ok=True)

    wall_start = time.perf_counter()
    for row in state.curve:
        if on_step is not None:
            on_step(row)
    dev.reset_peak_memory(device)
    outcome = train(
        state, loaded.train, loaded.val, params, checkpoint_path=last,
        tokenizer_hash=loaded.tokenizer_hash, seed=study.seed,
        compile_model=params.compile, peak_flops=peak, on_step=on_step, progress=progress, ranks=ranks,
    )
    gpt = state.model
    if not ranks.is_main:
        # Rank 0 holds the same weights and writes every file; the others are done.
        distributed.finish(ranks)
        return {"steps": outcome.step, "train_loss": outcome.train_loss, "rank": ranks.rank}
    metrics: dict[str, Any] = {
        "steps": outcome.step,
        "tokens": outcome.tokens,
        "train_loss": outcome.train_loss,
        "params": gpt.num_params(),
        "flops_per_token": gpt.flops_per_token(),
        "threads": torch.get_num_threads(),
        "processes": ranks.world_size,
    }
    timing: dict[str, Any] = {
        "tokens_per_s": outcome.tokens_per_s,
        "ms_per_step": outcome.ms_per_step,
        "train_seconds": outcome.train_seconds,
        "peak_memory_mb": dev.peak_memory_bytes(device) / 2**20,
    }
    if outcome.val_loss is not None:
        metrics["val_loss"] = outcome.val_loss
        metrics["val_perplexity"] = float(torch.tensor(outcome.val_loss).exp())
    if outcome.mfu is not None:
        timing["mfu"] = outcome.mfu
        timing["peak_flops"] = peak

    if loaded.probe is not None:
        probe_start = time.perf_counter()
        metrics |= probe_facts(gpt, loaded, out / "facts.csv")
        timing["probe_seconds"] = time.perf_counter() - probe_start

    final_checkpoint(state, out / "ckpt.pt", params, study.seed, loaded.tokenizer_hash, device=study.device,
                     extra={"model_name": model_name, "metrics": metrics})
    write_curve(out / "curve.csv", outcome.curve, CURVE_COLUMNS)
    write_curve(out / "timing.csv", outcome.curve, TIMING_COLUMNS)
    plot_loss(outcome.curve, out / "loss.png", title=f"{study.study} / {model_name}")
    timing["wall_seconds"] = time.perf_counter() - wall_start
    write_json(out / "metrics.json", metrics)
    write_json(out / "timing.json", timing)
    write_json(out / "provenance.json", provenance(
        {"model": study.models[model_name].model_dump(mode="json"), "train": params.model_dump(mode="json")},
        study.seed, loaded.data_hash) | {"tokenizer_hash": loaded.tokenizer_hash, "device": device.type})
    if last.exists():
        last.unlink()
    distributed.finish(ranks)
    return metrics
