"""The posttrain stage as a function of files in, files out: `run(study, Inputs(init, data,
tokenizer), out, model=name, scheme=name, seed=k)`. (SFT, where it starts, is `nextlab.posttrain.sft`.)

Post-training: from the SFT checkpoint (the confidence SFT one for `calibrated`), one run per
(scheme, seed). Each step draws `questions_per_step` questions, a `finetune_share` of them from
the fine-tune split and the rest from the RL pool (seen people whose questions were never trained
on, and never-seen names of that split), and takes one policy-gradient step
(`policy_gradient.pg_step`) under the scheme's reward; the KL penalty anchors it to its start.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from nextlab.config import Study
from nextlab.config.posttrain import Scheme, parse_scheme
from nextlab.data.world import IDK, World
from nextlab.errors import NextlabError
from nextlab.io import json_safe, write_json
from nextlab.model import GPT
from nextlab.model.checkpoint import save_checkpoint
from nextlab.posttrain import sft
from nextlab.posttrain.decision import (
    belief_targets,
    decision_examples,
    decision_targets,
    recalibrated_targets,
    wrong_cost,
)
from nextlab.posttrain.policy_gradient import PGConfig, pg_step
from nextlab.posttrain.rewards import reward, reward_range
from nextlab.posttrain.sft import FINAL_WINDOW, SFTConfig, finetune, sft_examples, start_from, write_csv
from nextlab.progress import bar as progress_bar
from nextlab.provenance import provenance
from nextlab.qa.answers import candidate_columns
from nextlab.qa.codec import QACodec, graded
from nextlab.qa.inputs import read_qa, require_split

log = logging.getLogger(__name__)

# Post-training has collapsed to abstaining when the final steps abstain this often (the known
# failure of penalized rewards: "I don't know" is a safe local optimum).
COLLAPSE_ABSTAIN_RATE = 0.95


def start_stage_of(scheme: Scheme) -> str:
    """The stage whose checkpoint a scheme's post-training starts from."""
    return "sft_confidence" if scheme.kind == "calibrated" else "sft"


def reward_fn_for(scheme: Scheme, codec: QACodec, golds: list[str]):
    """The policy gradient's reward callable: decode, grade (`graded`: an answer that never ended
    is wrong), reward."""

    def fn(i: int, tokens: list[int]) -> tuple[float, str]:
        decoded = codec.decode(tokens)
        g = graded(decoded, golds[i])
        return reward(scheme, g, decoded.stated), g

    return fn


def posttrain_pool(qa: pd.DataFrame, qa_path: str | Path) -> tuple[pd.DataFrame, int]:
    """The RL pool's questions followed by the fine-tune split's, and how many are the RL pool's."""
    rl_rows = require_split(qa, "rl", qa_path)
    ft_rows = require_split(qa, "finetune", qa_path)
    return pd.concat([rl_rows, ft_rows], ignore_index=True), len(rl_rows)


Inputs = sft.Inputs  # the same files: the start checkpoint (init), the data and tokenizer folders


def run(
    study: Study,
    inputs: Inputs,
    out: str | Path,
    *,
    model: str,
    scheme: str,
    seed: int,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Post-train `model` from `inputs.init` under `scheme` with `seed`; write `ckpt.pt`,
    `steps.csv`, `metrics.json` into `out`; return the metrics."""
    model_name, scheme_name, data_dir = model, scheme, inputs.data
    try:
        scheme = parse_scheme(scheme_name)
    except ValueError as err:
        raise NextlabError(str(err)) from None
    if not scheme.trains:
        raise NextlabError(f"scheme {scheme_name!r} trains nothing: evaluate the SFT checkpoint instead")
    p = study.posttrain
    qa_path = Path(data_dir) / "qa.parquet"
    pool, n_rl_pool = posttrain_pool(read_qa(qa_path), qa_path)
    torch.manual_seed(seed)  # before the model is built: its initialisation draws from it
    rng = np.random.default_rng([study.seed, seed])
    ckpt, tok, tok_hash, codec, policy, device = start_from(study, model_name, inputs.init, inputs.tokenizer,
                                                            start_stage_of(scheme))
    decided = (_decision_phase(study, scheme, policy, codec, pool, n_rl_pool, Path(data_dir), seed)
               if p.decision_steps > 0 and scheme.kind in ("binary", "penalized") else _NO_DECISION)
    # The KL anchors the policy-gradient phase to where it starts (after the decision phase, if any).
    ref = copy.deepcopy(policy).requires_grad_(False)
    prompts = [codec.prompt(q) for q in pool["question"]]
    golds = pool["answer"].tolist()
    seen = pool["seen"].to_numpy(bool)
    rl_index = np.arange(n_rl_pool)
    ft_index = np.arange(n_rl_pool, len(pool))
    n_ft = min(len(ft_index), int(round(p.finetune_share * p.questions_per_step)))
    n_rl = min(len(rl_index), p.questions_per_step - n_ft)

    start = time.perf_counter()

    cfg = PGConfig(group_size=p.group_size, temperature=p.temperature, kl_coef=p.kl_coef,
                   grad_clip=p.grad_clip, max_new_tokens=p.max_answer_tokens, advantage=p.advantage,
                   abstain_reward=reward(scheme, "abstain", 0.0), abstain_token=codec.answer_body(IDK)[0],
                   reward_range=reward_range(scheme), batch_invariant=p.batch_invariant)
    optimizer = policy.configure_optimizer(p.lr, weight_decay=0.0, betas=(0.9, 0.95))
    generator = torch.Generator(device=device).manual_seed(seed)
    steps: list[dict[str, Any]] = []
    bar = progress_bar(p.steps, "step", f"post-training {scheme.name}")
    for step in range(1, p.steps + 1):
        chosen = np.concatenate([rng.choice(rl_index, n_rl, replace=False),
                                 rng.choice(ft_index, n_ft, replace=False)])
        fn = reward_fn_for(scheme, codec, [golds[i] for i in chosen])
        abstained: list[float] = []
        t0 = time.perf_counter()
        row: dict[str, Any] = {"step": step, **pg_step(policy, ref, optimizer, [prompts[i] for i in chosen], fn, cfg,
                                                        generator, abstained)}
        row["seconds"] = time.perf_counter() - t0
        per_answer, on_seen = np.array(abstained), seen[np.repeat(chosen, p.group_size)]
        row["abstain_rate_seen"] = float(per_answer[on_seen].mean()) if on_seen.any() else math.nan
        row["abstain_rate_unseen"] = float(per_answer[~on_seen].mean()) if (~on_seen).any() else math.nan
        steps.append(row)
        bar.update(1)
        if on_step is not None:
            on_step(row)
        if step == 1 or step % 10 == 0 or step == p.steps:
            log.info("%s seed %d step %d: reward %.3f, abstain %.2f (seen %.2f, unseen %.2f), KL %.4f",
                     scheme.name, seed, step, row["reward"], row["abstain_rate"], row["abstain_rate_seen"],
                     row["abstain_rate_unseen"], row["kl"])
    bar.close()
    seconds = time.perf_counter() - start

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "ckpt.pt", policy, tokenizer_hash=tok_hash, step=p.steps,
                    train_config=p.model_dump(mode="json") | {"seed": seed},
                    extra={"stage": "posttrain", "model": model_name, "scheme": scheme.name, "seed": seed})
    # What the steps computed, and apart from it how long each took (it differs run to run).
    write_csv(out / "steps.csv", [{k: v for k, v in row.items() if k != "seconds"} for row in steps])
    write_csv(out / "timing.csv", [{"step": row["step"], "seconds": row["seconds"]} for row in steps])
    metrics = summarize_steps(steps) | {"steps": p.steps} | decided
    timing = {"seconds": seconds, "seconds_per_step": float(np.mean([row["seconds"] for row in steps]))}
    if metrics["collapsed_to_abstain"]:
        log.warning("%s seed %d collapsed to abstaining: final abstain rate %.2f (>= %.2f)", scheme.name, seed,
                    metrics["final_abstain_rate"], COLLAPSE_ABSTAIN_RATE)
    write_json(out / "metrics.json", json_safe(metrics))
    write_json(out / "timing.json", timing)
    write_json(out / "provenance.json", provenance(p, seed, tok_hash))
    return metrics


# Every scheme's metrics carry the same keys; these where the phase did not run.
_NO_DECISION: dict[str, Any] = {"decision_steps": 0, "decision_questions": 0, "decision_answer_targets": 0,
                                "decision_abstain_targets": 0, "decision_guess_accuracy": math.nan,
                                "decision_abstain_draw_share": math.nan,
                                "decision_final_loss": math.nan}


def _decision_phase(study: Study, scheme: Scheme, policy: GPT, codec: QACodec, pool: pd.DataFrame, n_rl_pool: int,
                    data_dir: Path, seed: int) -> dict[str, Any]:
    """Fine-tune `policy` in place on the answer-or-abstain targets of the RL pool's questions
    (`nextlab.posttrain.decision`), with the fine-tune split's SFT examples as `finetune_share` of
    the draws; return the phase's figures."""
    p = study.posttrain
    rl, ft = pool.iloc[:n_rl_pool], pool.iloc[n_rl_pool:]
    world = World.load(data_dir / "world.json")
    golds = rl["answer"].tolist()
    guesses = candidate_columns(policy, codec, rl["question"].tolist(), rl["attribute"].tolist(), golds, golds,
                                world.vocabularies)
    right = guesses["guess_correct"].to_numpy(bool)
    if p.decision_targets == "belief":
        targets, all_weights = belief_targets(guesses["guess"].tolist(), guesses["guess_confidence"].tolist(),
                                              wrong_cost(scheme))
    elif p.decision_targets == "recalibrated":
        targets, all_weights = recalibrated_targets(guesses["guess"].tolist(), guesses["guess_confidence"].tolist(),
                                                    right.tolist(), wrong_cost(scheme))
    else:
        targets, all_weights = decision_targets(guesses["guess"].tolist(), right.tolist(), wrong_cost(scheme))
    abstains = np.array([t == IDK for t in targets])
    examples, weights = decision_examples([codec.prompt(q) for q in rl["question"]],
                                          [codec.answer(t) for t in targets], all_weights)
    abstain_weight = sum(w for w, a in zip(all_weights, abstains) if a)
    if not examples:  # binary on a model that gets nothing right: no action beats another
        log.warning("%s: the answer-or-abstain phase has no target with a positive weight; skipped", scheme.name)
        return _NO_DECISION
    # The RL pool's targets carry 1 - finetune_share of the draws, the fine-tune split the rest.
    anchor = sft_examples(codec, ft)
    share = p.finetune_share if anchor else 0.0
    total = sum(weights)
    draw = [w / total * (1.0 - share) for w in weights] + [share / max(len(anchor), 1)] * len(anchor)
    cfg = SFTConfig(steps=p.decision_steps, batch_size=study.sft.batch_size, lr=p.decision_lr,
                    warmup_steps=min(study.sft.warmup_steps, p.decision_steps), weight_decay=0.0,
                    grad_clip=p.grad_clip)
    curve = finetune(policy, examples + anchor, cfg, torch.Generator().manual_seed(seed + 17), weights=draw)
    tail = curve[-min(FINAL_WINDOW, len(curve)):]
    return {
        "decision_steps": p.decision_steps,
        "decision_questions": len(rl),
        "decision_answer_targets": int((~abstains).sum()),
        "decision_abstain_targets": int(abstains.sum()),
        "decision_guess_accuracy": float(right.mean()),
        "decision_abstain_draw_share": float(abstain_weight / total * (1.0 - share)),
        "decision_final_loss": float(np.mean([r["loss"] for r in tail])),
    }


def summarize_steps(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """First- and final-window means of the per-step log, and the collapse flag (same keys for
    every scheme)."""
    frame = pd.DataFrame(steps)
    first = frame.head(FINAL_WINDOW)
    final = frame.tail(FINAL_WINDOW)
    out: dict[str, Any] = {}
    for key in ("reward", "abstain_rate", "abstain_rate_seen", "abstain_rate_unseen", "correct_rate",
                "wrong_rate", "kl", "sampler_trainer_kl", "logprob_diff_max"):
        out[f"first_{key}"] = float(first[key].mean())
        out[f"final_{key}"] = float(final[key].mean())
    out["collapsed_to_abstain"] = int(out["final_abstain_rate"] >= COLLAPSE_ABSTAIN_RATE)
    return out
