"""The sft and posttrain stages as functions of files in and files out.

SFT: from the pretrained checkpoint, on the fine-tune split's questions (people with their answers,
never-seen names with "I don't know"), loss on answer tokens only.

Confidence SFT (the calibrated scheme's starting point): the calibrated scheme answers
`answer<|confidence|>0.7`, a format the SFT model has never seen. A second, short SFT from the SFT
model teaches it: its targets are the SFT model's *own* greedy answers to the RL pool's questions
followed by its own probability of that answer (answer tokens and the token that ends
them), rounded to one decimal; "I don't know" is followed by 0.0 (an abstention is never right).
No gold answer enters these targets, so the RL pool's answers stay unseen. The stated confidence
starts as a copy of the model's sequence probability, and the RLCR reward then moves it toward
the actual chance of being right. It runs once per model (not per seed): with fewer steps the
format was fragile under sampling (the marker came out as a stray byte at temperature 0.7).

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
from nextlab.generate import EOS_ID, generate
from nextlab.io import atomic_path, json_safe, write_json
from nextlab.model import GPT
from nextlab.model.checkpoint import model_from_checkpoint, save_checkpoint
from nextlab.model.device import resolve_device
from nextlab.posttrain.decision import (
    belief_targets,
    decision_examples,
    decision_targets,
    recalibrated_targets,
    wrong_cost,
)
from nextlab.posttrain.policy_gradient import PGConfig, pg_step
from nextlab.posttrain.rewards import reward, reward_range
from nextlab.posttrain.sft import Example, SFTConfig, finetune, mean_answer_loss
from nextlab.progress import bar as progress_bar
from nextlab.provenance import provenance
from nextlab.qa.answers import candidate_columns, greedy_answers
from nextlab.qa.codec import QACodec, answer_end, graded
from nextlab.qa.grading import is_abstention
from nextlab.qa.inputs import checked_checkpoint, read_qa, require_split, tokenizer_and_hash
from nextlab.tokenizer.bpe import CONFIDENCE_ID

log = logging.getLogger(__name__)

# Post-training has collapsed to abstaining when the final steps abstain this often (the known
# failure of penalized rewards: "I don't know" is a safe local optimum).
COLLAPSE_ABSTAIN_RATE = 0.95
FINAL_WINDOW = 5  # steps averaged for the final figures of a run


def _start_from(study: Study, model_name: str, ckpt_path: str | Path, tokenizer_dir: str | Path,
                stage: str) -> tuple[dict[str, Any], Any, str, QACodec, GPT, torch.device]:
    """The checkpoint a job starts from, checked against the study and tokenizer, as a model on
    the study's device, with the tokenizer, its hash and the QA codec."""
    tok, tok_hash = tokenizer_and_hash(tokenizer_dir)
    ckpt = checked_checkpoint(ckpt_path, study, model_name, tok_hash, tok.get_vocab_size(), stage=stage)
    device = resolve_device(study.train.device)
    return ckpt, tok, tok_hash, QACodec(tok), model_from_checkpoint(ckpt, device), device


def _write_finetuned(out_dir: str | Path, model: GPT, tok_hash: str, steps: int, params: Any, seed: int,
                     stage: str, model_name: str, curve: list[dict[str, Any]], metrics: dict[str, Any],
                     seconds: float) -> None:
    """`ckpt.pt`, `curve.csv`, `metrics.json`, `timing.json` and `provenance.json` of a fine-tuning job."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "ckpt.pt", model, tokenizer_hash=tok_hash, step=steps,
                    train_config=params.model_dump(mode="json") | {"seed": seed},
                    extra={"stage": stage, "model": model_name})
    _write_csv(out / "curve.csv", curve)
    write_json(out / "metrics.json", json_safe(metrics))
    write_json(out / "timing.json", {"seconds": seconds})
    write_json(out / "provenance.json", provenance(params, seed, tok_hash))


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


# ---- SFT --------------------------------------------------------------------------------------

def sft_examples(codec: QACodec, rows: pd.DataFrame) -> list[Example]:
    return [Example(codec.prompt(q), codec.answer(a)) for q, a in zip(rows["question"], rows["answer"])]


def run_sft(
    study: Study,
    model_name: str,
    pretrain_ckpt: str | Path,
    data_dir: str | Path,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Write `ckpt.pt`, `curve.csv`, `metrics.json` into `out_dir`; return the metrics."""
    qa_path = Path(data_dir) / "qa.parquet"
    qa = read_qa(qa_path)
    train_rows = require_split(qa, "finetune", qa_path)
    held_rows = require_split(qa, "calibration", qa_path)
    _, _, tok_hash, codec, model, _ = _start_from(study, model_name, pretrain_ckpt, tokenizer_dir, "pretrain")
    examples = sft_examples(codec, train_rows)
    # Held-out answer loss on the calibration split's seen people: what SFT does to unseen questions.
    held = sft_examples(codec, held_rows[held_rows["seen"]])
    held_before = mean_answer_loss(model, held)
    p = study.sft
    cfg = SFTConfig(steps=p.steps, batch_size=p.batch_size, lr=p.lr, warmup_steps=p.warmup_steps,
                    weight_decay=p.weight_decay, grad_clip=p.grad_clip)
    start = time.perf_counter()
    curve = finetune(model, examples, cfg, torch.Generator().manual_seed(study.seed + 11), on_step)
    seconds = time.perf_counter() - start
    held_after = mean_answer_loss(model, held)
    tail = curve[-min(FINAL_WINDOW, len(curve)):]
    metrics = {
        "examples": len(examples),
        "steps": p.steps,
        "train_loss": float(np.mean([r["loss"] for r in tail])),
        "heldout_answer_loss_before": held_before,
        "heldout_answer_loss_after": held_after,
    }
    _write_finetuned(out_dir, model, tok_hash, p.steps, p, study.seed, "sft", model_name, curve, metrics, seconds)
    return metrics | {"seconds": seconds}


# ---- post-training ----------------------------------------------------------------------------

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


@torch.no_grad()
def own_confidence_examples(
    model: torch.nn.Module, codec: QACodec, questions: list[str], max_new_tokens: int, batch_size: int = 64
) -> list[Example]:
    """Confidence-SFT targets: the model's greedy answer, then `<|confidence|>` and the model's
    probability of that answer (answer tokens + the token that ends it) to one decimal; 0.0 after
    "I don't know". An answer that never ended is kept as far as it went, with its (small)
    probability, so even a barely trained model learns where the confidence goes."""
    examples = []
    for start in range(0, len(questions), batch_size):
        prompts = [codec.prompt(q) for q in questions[start : start + batch_size]]
        out = generate(model, prompts, max_new_tokens, temperature=0.0, eos_id=EOS_ID)
        for i, prompt in enumerate(prompts):
            decoded = codec.decode(out.tokens[i])
            end = answer_end(out.tokens[i])
            confidence = 0.0 if is_abstention(decoded.answer) else math.exp(sum(out.logprobs[i][:end]))
            examples.append(Example(prompt, codec.answer(decoded.answer, confidence=confidence)))
    return examples


def posttrain_pool(qa: pd.DataFrame, qa_path: str | Path) -> tuple[pd.DataFrame, int]:
    """The RL pool's questions followed by the fine-tune split's, and how many are the RL pool's."""
    rl_rows = require_split(qa, "rl", qa_path)
    ft_rows = require_split(qa, "finetune", qa_path)
    return pd.concat([rl_rows, ft_rows], ignore_index=True), len(rl_rows)


def run_sft_confidence(
    study: Study,
    model_name: str,
    sft_ckpt: str | Path,
    data_dir: str | Path,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The calibrated scheme's start: write `ckpt.pt`, `curve.csv`, `metrics.json` into `out_dir`."""
    qa_path = Path(data_dir) / "qa.parquet"
    qa = read_qa(qa_path)
    # The RL pool only: on the fine-tune split's memorised questions every answer would be stated
    # 1.0 and the model would learn nothing but "1.0" (seen in a trial).
    pool = require_split(qa, "rl", qa_path)
    held_rows = require_split(qa, "calibration", qa_path)
    _, tok, tok_hash, codec, model, _ = _start_from(study, model_name, sft_ckpt, tokenizer_dir, "sft")
    p, pt = study.sft, study.posttrain

    start = time.perf_counter()
    examples = own_confidence_examples(model, codec, pool["question"].tolist(), pt.max_answer_tokens)
    cfg = SFTConfig(steps=p.confidence_steps, batch_size=p.batch_size, lr=p.confidence_lr,
                    warmup_steps=min(p.warmup_steps, p.confidence_steps), weight_decay=p.weight_decay,
                    grad_clip=p.grad_clip)
    curve = finetune(model, examples, cfg, torch.Generator().manual_seed(study.seed + 13), on_step)
    seconds = time.perf_counter() - start
    # Did the format take, and does the stated confidence mean anything yet? Greedy answers to the
    # calibration split's questions: the starting point the calibrated scheme's results build on.
    held = greedy_answers(model, codec, held_rows["question"].tolist(), held_rows["answer"].tolist(),
                          pt.max_answer_tokens)
    tail = curve[-min(FINAL_WINDOW, len(curve)):]
    metrics = {
        "examples": len(examples),
        "steps": p.confidence_steps,
        "train_loss": float(np.mean([r["loss"] for r in tail])),
        "mean_target_confidence": float(np.mean([
            float(tok.decode(e.target[e.target.index(CONFIDENCE_ID) + 1 : -1])) for e in examples])),
        "heldout_accuracy": float((held["grade"] == "correct").mean()),
        "heldout_abstention": float((held["grade"] == "abstain").mean()),
        "stated_format_rate": float(held["stated_confidence"].notna().mean()),
    }
    # The answers themselves, for calibration metrics where they belong (the evaluation layer):
    # this stage stays free of them, so editing a metric reruns evaluation, not post-training.
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(out_dir) / "heldout.parquet") as tmp:
        held.assign(question_id=held_rows["question_id"].to_numpy()).to_parquet(tmp, index=False)
    _write_finetuned(out_dir, model, tok_hash, p.confidence_steps, p, study.seed, "sft_confidence", model_name,
                     curve, metrics, seconds)
    return metrics | {"seconds": seconds}


def run_posttrain(
    study: Study,
    model_name: str,
    scheme_name: str,
    seed: int,
    start_ckpt: str | Path,
    data_dir: str | Path,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Write `ckpt.pt`, `steps.csv`, `metrics.json` into `out_dir`; return the metrics."""
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
    ckpt, tok, tok_hash, codec, policy, device = _start_from(study, model_name, start_ckpt, tokenizer_dir,
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

    cfg = PGConfig(group_size=p.group_size, temperature=p.temperature, lr=p.lr, kl_coef=p.kl_coef,
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

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "ckpt.pt", policy, tokenizer_hash=tok_hash, step=p.steps,
                    train_config=p.model_dump(mode="json") | {"seed": seed},
                    extra={"stage": "posttrain", "model": model_name, "scheme": scheme.name, "seed": seed})
    # What the steps computed, and apart from it how long each took (it differs run to run).
    _write_csv(out / "steps.csv", [{k: v for k, v in row.items() if k != "seconds"} for row in steps])
    _write_csv(out / "timing.csv", [{"step": row["step"], "seconds": row["seconds"]} for row in steps])
    metrics = summarize_steps(steps) | {"steps": p.steps} | decided
    timing = {"seconds": seconds, "seconds_per_step": float(np.mean([row["seconds"] for row in steps]))}
    if metrics["collapsed_to_abstain"]:
        log.warning("%s seed %d collapsed to abstaining: final abstain rate %.2f (>= %.2f)", scheme.name, seed,
                    metrics["final_abstain_rate"], COLLAPSE_ABSTAIN_RATE)
    write_json(out / "metrics.json", json_safe(metrics))
    write_json(out / "timing.json", timing)
    write_json(out / "provenance.json", provenance(p, seed, tok_hash))
    return metrics | timing


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
