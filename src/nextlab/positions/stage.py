"""The positions stage: one job per model and variant, pretrained from scratch and probed.

One job is `run(study, Inputs(tokens, data), out, model=name, variant=name)`. Outputs in `out`
(results/<study>/positions/<model>/<variant>/):

| file | content |
|---|---|
| `ckpt.pt` | the variant's pretrained weights, config and optimizer state |
| `curve.parquet` | step, lr, train loss and (at the start and the end) held-out loss |
| `recall.parquet` | per probed person x attribute: the true value's rank among the candidates |
| `order.parquet` | per relation (and control pair): log P of each direction, the margin, the preference |
| `metrics.json`, `provenance.json` | flat headline metrics; code version, params hash, data and tokenizer hashes |

Every variant trains on the same tokens with the same seed (the same initial weights where the
shapes agree, the same windows) and the same schedule; only how position reaches the model
differs. The order-blind control sees the whole window at every position, its own next token
included, so its held-out loss is not a prediction score (it is reported, flagged); recall and
order are measured on whole sentences, where it has no such advantage.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextlab.config import Study
from nextlab.config.positions import VARIANTS, variant_shape
from nextlab.data.world import World
from nextlab.errors import NextlabError
from nextlab.io import atomic_path, require_file, write_json
from nextlab.model import device as dev
from nextlab.positions.probes import control_pairs, order_rows, recall_rows
from nextlab.provenance import data_hash_of, provenance
from nextlab.train.loop import final_checkpoint, new_state, train
from nextlab.train.stage import load_inputs

log = logging.getLogger(__name__)


def probed_people(world: World, n: int, seed: int) -> list[Any]:
    """Up to n seen people, drawn without replacement, in id order."""
    seen = [p for p in world.people if p.seen]
    if len(seen) <= n:
        return seen
    keep = np.sort(np.random.default_rng([seed, 10]).choice(len(seen), n, replace=False))
    return [seen[i] for i in keep]


def variant_metrics(recall: pd.DataFrame, order: pd.DataFrame) -> dict[str, float]:
    """Recall (all facts and per mention count), the share of relations whose true direction is
    preferred, the same share on control pairs, and the mean margins."""
    out = {"recall": float(recall["correct"].mean())}
    for k, g in recall.groupby("mentions"):
        out[f"recall_k{int(k)}"] = float(g["correct"].mean())
    for kind, g in order.groupby("kind"):
        out[f"order_{kind}_prefers_forward"] = float(g["prefers_forward"].mean())
        out[f"order_{kind}_margin"] = float(g["margin"].mean())
    return out


@dataclass(frozen=True)
class Inputs:
    """The folders a positions job reads."""

    tokens: Path  # the tokenize stage's folder
    data: Path  # the data stage's folder (the world, for the probes)


def run(study: Study, inputs: Inputs, out: str | Path, *, model: str, variant: str) -> dict[str, Any]:
    """Pretrain `model` reshaped as `variant` from scratch and probe it; write the tables, ckpt.pt and
    metrics.json into `out`; return the metrics."""
    model_name = model
    p = study.positions
    if variant not in VARIANTS:
        raise NextlabError(f"positions variant {variant!r} is not one of {list(VARIANTS)}")
    if not study.data.synthetic:
        raise NextlabError("the positions stage needs the synthetic world (data.user_corpus.mode is 'replace')")
    data_dir, tokens_dir, out = Path(inputs.data), Path(inputs.tokens), Path(out)
    world_path = require_file(data_dir / "world.json", "world")
    world = World.load(world_path)
    if not world.relations:
        raise NextlabError(f"{world_path}: the world has no relations for the order probe; set data.relations > 0")
    inputs = load_inputs(study, model_name, tokens_dir, None)
    config = dataclasses.replace(inputs.config, **variant_shape(variant))
    params = study.train.model_copy(update={
        "steps": p.steps, "warmup_steps": min(study.train.warmup_steps, p.steps),
        "eval_every": p.steps, "eval_batches": p.val_batches, "checkpoint_every": p.steps,
    })
    people = probed_people(world, p.recall_people, study.seed)
    names = {q.person_id: q.name for q in world.people}
    related = {pid for r in world.relations for pid in (r["mentor"], r["mentee"])}
    controls = control_pairs([q.person_id for q in world.people if q.seen], related, study.seed)

    device = dev.resolve_device(study.device)
    dev.setup_device(device)
    start = time.perf_counter()
    state = new_state(config, params, study.seed, device)
    out.mkdir(parents=True, exist_ok=True)
    outcome = train(state, inputs.train, inputs.val, params, checkpoint_path=out / "last.pt",
                    tokenizer_hash=inputs.tokenizer_hash, seed=study.seed, progress=False)
    train_seconds = time.perf_counter() - start
    model = state.model.eval()
    recall = pd.DataFrame(recall_rows(model, inputs.tokenizer, people, world.vocabularies, p.candidates, study.seed))
    order = pd.DataFrame(order_rows(model, inputs.tokenizer, names, world.relations, controls))
    probe_seconds = time.perf_counter() - start - train_seconds

    metrics: dict[str, Any] = {"variant": variant, "positional": config.positional, "causal": config.causal,
                               "steps": outcome.step, "train_loss": outcome.train_loss,
                               "params": model.num_params(), "sees_future": not config.causal}
    if outcome.val_loss is not None:
        metrics["val_loss"] = outcome.val_loss
    metrics |= variant_metrics(recall, order)
    curve = pd.DataFrame(outcome.curve)[["step", "lr", "train_loss", "val_loss"]]
    for name, table in (("recall", recall), ("order", order), ("curve", curve)):
        with atomic_path(out / f"{name}.parquet") as tmp:
            table.assign(model=model_name, variant=variant).to_parquet(tmp, index=False)
    final_checkpoint(state, out / "ckpt.pt", params, study.seed, inputs.tokenizer_hash, device=study.device,
                     extra={"model_name": model_name, "variant": variant, "metrics": metrics})
    write_json(out / "metrics.json", metrics)
    write_json(out / "timing.json", {"train_seconds": train_seconds, "probe_seconds": probe_seconds,
                                     "tokens_per_s": outcome.tokens_per_s})
    write_json(out / "provenance.json", {
        **provenance({"model": dataclasses.asdict(config), "train": params.model_dump(mode="json"),
                      "positions": p.model_dump(mode="json")}, study.seed, data_hash_of(data_dir)),
        "tokenizer_hash": inputs.tokenizer_hash, "device": device.type})
    log.info("positions %s/%s: %.1f s training, %.1f s probing; val loss %s, recall %.3f, order %.3f (control %.3f)",
             model_name, variant, train_seconds, probe_seconds, metrics.get("val_loss"), metrics["recall"],
             metrics.get("order_relation_prefers_forward", float("nan")),
             metrics.get("order_control_prefers_forward", float("nan")))
    return metrics
