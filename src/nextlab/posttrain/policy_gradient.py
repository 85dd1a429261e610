"""On-policy policy gradient with a group baseline and a KL penalty to a frozen reference model.

One step:
1. each of the step's prompts is answered `group_size` times by sampling from the policy at
   `temperature` (the sampled policy is softmax(logits / temperature));
2. every answer gets a reward; its advantage (`advantage="group"`) is the reward minus the mean
   reward of its group (the other answers to the same prompt), so only answers better than the
   model's own average are pushed up, and a group where all answers score the same teaches
   nothing. With `advantage="vs_abstain"` each sampled answer is compared with the alternative of
   abstaining instead: its advantage is its reward minus the reward of "I don't know"
   (`abstain_reward`), and an abstention's is 0. An answer is pushed up exactly where it pays
   more than abstaining. Under a penalized reward the group baseline instead credits every
   sampled abstention whenever most of the group's answers are wrong (the group's mean is
   negative), an explicit push towards "I don't know" on every question the model is unsure of;
3. loss = -mean(advantage x log pi_T(answer)) + kl_coef x mean over answer tokens of
   KL(pi(.|prefix) || pi_ref(.|prefix)), the exact KL over the vocabulary at temperature 1;
4. one AdamW step with gradient clipping.

Rewards come from a callable `reward_fn(prompt_index, answer_tokens) -> (reward, grade)`, so the
loop knows nothing of text, grading or schemes; `grade` ("correct", "wrong", "abstain") only feeds
the per-step log. Works with any model called as `model(idx) -> logits (B, T, vocab)` that has a
`config.block_size` and `config.vocab_size` (`nextlab.model.GPT`).

Worked example (the test suite's toy problem: answer token 7 is rewarded)::

    cfg = PGConfig(group_size=16, temperature=1.0, kl_coef=0.0, max_new_tokens=1)
    reward_fn = lambda i, toks: (1.0, "correct") if toks[:1] == [7] else (0.0, "wrong")
    optimizer = torch.optim.AdamW(policy.parameters(), lr=0.03)
    for _ in range(40):
        log = pg_step(policy, ref, optimizer, [[0, 3], [0, 4]], reward_fn, cfg, generator)
    log["reward"]   # from ~1/16 to ~1
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from nextlab.generate import EOS_ID, PAD_ID
from nextlab.posttrain.onpolicy import mismatch, sample, trainer_logits

RewardFn = Callable[[int, list[int]], tuple[float, str]]


@dataclass(frozen=True)
class PGConfig:
    group_size: int = 6
    temperature: float = 0.7
    lr: float = 3e-4
    kl_coef: float = 0.05
    grad_clip: float = 1.0
    max_new_tokens: int = 16
    advantage: str = "group"  # or "vs_abstain" (see the module doc)
    abstain_reward: float = 0.0  # the reward of "I don't know", the vs_abstain baseline
    eos_id: int = EOS_ID
    pad_id: int = PAD_ID
    batch_invariant: bool = False  # sampler and trainer through the batch-invariant kernels (onpolicy.py)


def group_advantages(rewards: np.ndarray) -> np.ndarray:
    """Reward minus its group's mean; `rewards` is (prompts, group_size).

    >>> group_advantages(np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])).tolist()
    [[0.5, -0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]
    """
    return rewards - rewards.mean(axis=1, keepdims=True)


def versus_abstain_advantages(rewards: np.ndarray, abstain_reward: float) -> np.ndarray:
    """Each sampled answer against abstaining instead: its reward minus the reward of "I don't
    know" (an abstention's advantage is then 0: it is the baseline itself).

    >>> versus_abstain_advantages(np.array([[1.0, -3.0, 0.0, -3.0]]), 0.0).tolist()
    [[1.0, -3.0, 0.0, -3.0]]
    """
    return rewards - abstain_reward


def _teacher_forced(
    model: torch.nn.Module, prompts: list[list[int]], answers: list[list[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits at the positions that predict each answer token, right-padded.

    Returns logits (N, L, vocab), the answer tokens (N, L) and their mask (N, L), L the longest
    answer. Right padding needs no attention mask: causal attention never lets a real token see
    the padding after it.
    """
    inputs = [p + a[:-1] for p, a in zip(prompts, answers)]
    width = max(len(s) for s in inputs)
    L = max(len(a) for a in answers)
    device = next(model.parameters()).device
    idx = torch.full((len(inputs), width), pad_id, dtype=torch.long)
    for row, seq in enumerate(inputs):
        idx[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    logits = model(idx.to(device))
    # Position len(prompt) - 1 + j predicts answer token j.
    pos = torch.zeros((len(inputs), L), dtype=torch.long)
    targets = torch.full((len(inputs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(inputs), L), dtype=torch.bool)
    for row, (p, a) in enumerate(zip(prompts, answers)):
        pos[row, : len(a)] = torch.arange(len(p) - 1, len(p) - 1 + len(a))
        targets[row, : len(a)] = torch.tensor(a, dtype=torch.long)
        mask[row, : len(a)] = True
    pos, targets, mask = pos.to(device), targets.to(device), mask.to(device)
    picked = logits.gather(1, pos[:, :, None].expand(-1, -1, logits.size(-1)))
    return picked.float(), targets, mask


def pg_step(
    policy: torch.nn.Module,
    ref: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    prompts: list[list[int]],
    reward_fn: RewardFn,
    cfg: PGConfig,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One policy-gradient step on `prompts`; returns the step's log (before the update)."""
    G = cfg.group_size
    repeated = [p for p in prompts for _ in range(G)]
    # The same draws as generate(); the sampler's logits are kept to measure the mismatch.
    out = sample(policy, repeated, cfg.max_new_tokens, cfg.temperature, cfg.eos_id, cfg.pad_id, generator,
                 cfg.batch_invariant)
    # An empty answer can only come from max_new_tokens=0; give it the eos so it has a log-prob.
    answers = [toks if toks else [cfg.eos_id] for toks in out.tokens]

    scored = [reward_fn(i // G, toks) for i, toks in enumerate(answers)]
    rewards = np.array([r for r, _ in scored], dtype=float).reshape(len(prompts), G)
    grades = [g for _, g in scored]
    if cfg.advantage == "vs_abstain":
        adv_np = versus_abstain_advantages(rewards, cfg.abstain_reward)
    elif cfg.advantage == "group":
        adv_np = group_advantages(rewards)
    else:
        raise ValueError(f"advantage {cfg.advantage!r}; allowed: group, vs_abstain")
    adv = torch.tensor(adv_np.reshape(-1), dtype=torch.float32)

    policy.train()
    logits, targets, mask = trainer_logits(policy, repeated, answers, cfg.pad_id, cfg.batch_invariant)
    on_policy = mismatch(out.logits, logits, mask, cfg.temperature, targets)
    adv = adv.to(logits.device)
    logp_t = F.log_softmax(logits / cfg.temperature, dim=-1)
    token_logp = logp_t.gather(-1, targets[:, :, None]).squeeze(-1) * mask
    pg_loss = -(adv * token_logp.sum(1)).mean()

    n_tokens = mask.sum().clamp(min=1)
    if ref is not None and cfg.kl_coef > 0:
        logp = F.log_softmax(logits, dim=-1)
        with torch.no_grad():
            ref_logits, _, _ = _teacher_forced(ref, repeated, answers, cfg.pad_id)
            ref_logp = F.log_softmax(ref_logits, dim=-1)
        kl_tok = (logp.exp() * (logp - ref_logp)).sum(-1)
        kl = (kl_tok * mask).sum() / n_tokens
    else:
        kl = torch.zeros((), device=logits.device)
    loss = pg_loss + cfg.kl_coef * kl

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = (
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
        if cfg.grad_clip > 0
        else torch.zeros(())
    )
    optimizer.step()
    policy.eval()

    n = len(grades)
    return {
        "reward": float(rewards.mean()),
        "reward_std_in_group": float(rewards.std(axis=1).mean()),
        "answer_rate": sum(g != "abstain" for g in grades) / n,
        "abstain_rate": sum(g == "abstain" for g in grades) / n,
        "correct_rate": sum(g == "correct" for g in grades) / n,
        "wrong_rate": sum(g == "wrong" for g in grades) / n,
        "kl": float(kl.detach()),
        "loss": float(loss.detach()),
        "grad_norm": float(grad_norm),
        "answer_tokens": float(mask.sum()) / n,
        **on_policy,
    }
