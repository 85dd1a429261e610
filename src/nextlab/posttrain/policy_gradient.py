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
   negative), an explicit push towards "I don't know" on every question the model is unsure of.
   With `advantage="factored"` the step splits each answer into the two choices it makes (see
   below);
3. loss = -mean(advantage x log pi_T(answer)) + kl_coef x mean over answer tokens of
   KL(pi(.|prefix) || pi_ref(.|prefix)), the exact KL over the vocabulary at temperature 1;
4. one AdamW step with gradient clipping.

The factored step (`advantage="factored"`). Under the binary and penalized rewards only one
choice depends on the scheme: answer or abstain. Which value to answer is the same choice under
every scheme (the likeliest to be right). The plain gradient mixes the two: a sampled wrong value
with a negative advantage is pushed down as a token, and the same value token is the right answer
for other people, so a penalized scheme erodes what the model knows (the default study's
calibration split: the best candidate guess on seen people is right 0.41 of the time for the SFT
model, 0.31 after penalized-0.75). The factored step keeps the choices apart, with the policy
written pi(answer) pi(value | answer) (it keeps 0.36 of it, but at this scale scores no better:
params/default.yaml has the sweep):

* answers are sampled *given that the model answers*: the first token of "I don't know"
  (`abstain_token`) is never drawn, so every group estimates what answering is worth however
  rarely the policy answers (no collapse into a state where no answer is ever sampled);
* the value choice: each answer's log-probability given answering, weighted by its reward minus
  its group's mean, over the scheme's reward range (`reward_range`): a push towards the right value
  and away from the others of the same question, with no net push on values against abstaining;
* the answer-or-abstain choice: per question, the group's mean reward minus `abstain_reward` is
  what answering is worth; the decision loss is the cross-entropy of the better action (answer if
  it is worth more than abstaining) under pi at the first answer position, weighted by how much
  more, over the reward range. Its minimiser answers where the sampled answers' chance of being
  right exceeds t: the threshold policy, learned from outcomes.

The per-step log then reports the sampled policy's expected rates (abstention = its probability
of starting "I don't know", averaged over the questions), not the shares of the drawn answers.

Rewards come from a callable `reward_fn(prompt_index, answer_tokens) -> (reward, grade)`, so the
loop knows nothing of text, grading or schemes; `grade` ("correct", "wrong", "abstain") only feeds
the per-step log. Works with any model called as `model(idx) -> logits (B, T, vocab)` that has a
`config.block_size` and `config.vocab_size` (`nextlab.model.GPT`).

Worked example (the test suite's toy problem: answer token 7 is rewarded)::

    cfg = PGConfig(group_size=16, temperature=1.0, kl_coef=0.0, max_new_tokens=1)
    reward_fn = lambda i, toks: (1.0, "correct") if toks[:1] == [7] else (0.0, "wrong")
    optimizer = policy.configure_optimizer(lr=0.03)
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

from nextlab.config.posttrain import PosttrainParams
from nextlab.generate import EOS_ID, PAD_ID
from nextlab.posttrain.onpolicy import mismatch, sample, trainer_logits

RewardFn = Callable[[int, list[int]], tuple[float, str]]


_PT = PosttrainParams()  # the schema's defaults: one source for them


@dataclass(frozen=True)
class PGConfig:
    """One policy-gradient step's settings; unset fields take params `posttrain:`'s defaults. The
    learning rate is the optimizer's, which the caller builds."""

    group_size: int = _PT.group_size
    temperature: float = _PT.temperature
    kl_coef: float = _PT.kl_coef
    grad_clip: float = _PT.grad_clip
    max_new_tokens: int = _PT.max_answer_tokens
    advantage: str = _PT.advantage  # or "vs_abstain", "factored" (see the module doc)
    abstain_reward: float = 0.0  # the reward of "I don't know", the vs_abstain and factored baseline
    abstain_token: int | None = None  # the first token of "I don't know" (the factored step needs it)
    reward_range: float = 1.0  # best minus worst reward of the scheme (the factored step's scale)
    eos_id: int = EOS_ID
    pad_id: int = PAD_ID
    batch_invariant: bool = _PT.batch_invariant  # sampler and trainer through the batch-invariant kernels (onpolicy.py)


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


def factored_targets(rewards: np.ndarray, abstain_reward: float, reward_range: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The factored step's targets from rewards (prompts, group_size) of answers drawn given
    answering: each answer's value advantage (reward minus its group's mean, over the reward range),
    and per prompt whether answering is worth more than abstaining and by how much (over the range).

    Penalized-0.5 (right 1, wrong -1, range 2): three of four right, then one of four.

    >>> adv, answer, weight = factored_targets(np.array([[1.0, -1.0, 1.0, 1.0], [1.0, -1.0, -1.0, -1.0]]), 0.0, 2.0)
    >>> adv.tolist()
    [[0.25, -0.75, 0.25, 0.25], [0.75, -0.25, -0.25, -0.25]]
    >>> answer.tolist(), weight.tolist()
    ([True, False], [0.25, 0.25])
    """
    if reward_range <= 0:
        raise ValueError(f"reward_range must be > 0, got {reward_range}")
    worth = rewards.mean(axis=1) - abstain_reward
    return group_advantages(rewards) / reward_range, worth > 0, np.abs(worth) / reward_range


def pg_step(
    policy: torch.nn.Module,
    ref: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    prompts: list[list[int]],
    reward_fn: RewardFn,
    cfg: PGConfig,
    generator: torch.Generator | None = None,
    abstain_by_answer: list[float] | None = None,
) -> dict[str, float]:
    """One policy-gradient step on `prompts`; returns the step's log (before the update). For each
    drawn answer, prompt by prompt, whether it abstained (1.0 or 0.0; under `factored` the policy's
    probability of abstaining on its prompt) is appended to `abstain_by_answer` when given."""
    G = cfg.group_size
    factored = cfg.advantage == "factored"
    if factored and cfg.abstain_token is None:
        raise ValueError("advantage 'factored' needs cfg.abstain_token (the first token of \"I don't know\")")
    repeated = [p for p in prompts for _ in range(G)]
    # The same draws as generate(); the sampler's logits are kept to measure the mismatch.
    out = sample(policy, repeated, cfg.max_new_tokens, cfg.temperature, cfg.eos_id, cfg.pad_id, generator,
                 cfg.batch_invariant, banned_first=cfg.abstain_token if factored else None)
    # An empty answer can only come from max_new_tokens=0; give it the eos so it has a log-prob.
    answers = [toks if toks else [cfg.eos_id] for toks in out.tokens]

    scored = [reward_fn(i // G, toks) for i, toks in enumerate(answers)]
    rewards = np.array([r for r, _ in scored], dtype=float).reshape(len(prompts), G)
    grades = [g for _, g in scored]
    adv_np, answer_better, decision_weight = _advantages(rewards, cfg)
    adv = torch.tensor(adv_np.reshape(-1), dtype=torch.float32)

    policy.train()
    logits, targets, mask = trainer_logits(policy, repeated, answers, cfg.pad_id, cfg.batch_invariant)
    on_policy = mismatch(out.logits, logits, mask, cfg.temperature, targets)
    adv = adv.to(logits.device)
    logp_t = F.log_softmax(logits / cfg.temperature, dim=-1)
    token_logp = logp_t.gather(-1, targets[:, :, None]).squeeze(-1) * mask
    answer_logp = token_logp.sum(1)
    p_abstain = None
    if factored:
        answer_logp, decision_loss, p_abstain = _decision(logp_t, answer_logp, answer_better, decision_weight, cfg)
    else:
        decision_loss = torch.zeros((), device=logits.device)
    pg_loss = -(adv * answer_logp).mean() + decision_loss
    kl = _kl_to_reference(ref, logits, repeated, answers, mask, cfg)
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

    rates, abstained = _rates(grades, rewards, p_abstain, cfg)
    if abstain_by_answer is not None:
        abstain_by_answer.extend(abstained.tolist())
    return {
        "reward": rates["reward"],
        "reward_std_in_group": float(rewards.std(axis=1).mean()),
        "answer_rate": rates["answer_rate"],
        "abstain_rate": rates["abstain_rate"],
        "correct_rate": rates["correct_rate"],
        "wrong_rate": rates["wrong_rate"],
        "kl": float(kl.detach()),
        "loss": float(loss.detach()),
        "grad_norm": float(grad_norm),
        "answer_tokens": float(mask.sum()) / len(grades),
        **on_policy,
    }


def _advantages(rewards: np.ndarray, cfg: PGConfig) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Each drawn answer's advantage under `cfg.advantage`; `factored` adds, per prompt, whether
    answering beats abstaining and the weight of that decision."""
    if cfg.advantage == "vs_abstain":
        return versus_abstain_advantages(rewards, cfg.abstain_reward), None, None
    if cfg.advantage == "group":
        return group_advantages(rewards), None, None
    if cfg.advantage == "factored":
        return factored_targets(rewards, cfg.abstain_reward, cfg.reward_range)
    raise ValueError(f"advantage {cfg.advantage!r}; allowed: group, vs_abstain, factored")


def _decision(logp_t: torch.Tensor, answer_logp: torch.Tensor, answer_better: np.ndarray,
              decision_weight: np.ndarray, cfg: PGConfig) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The factored step's split of an answer's log-probability: log pi(answer tokens | answering),
    the answer-or-abstain decision's loss, and each prompt's probability of abstaining."""
    G = cfg.group_size
    # At the first answer position: log pi(abstain) and log pi(answer) = log of the rest.
    first = logp_t[:, 0, :]
    log_abstain = first[:, cfg.abstain_token]
    log_answer = torch.logsumexp(first.index_fill(1, torch.tensor([cfg.abstain_token], device=first.device),
                                                  float("-inf")), dim=-1)
    better = torch.tensor(np.repeat(answer_better, G), device=logp_t.device)
    weight = torch.tensor(np.repeat(decision_weight, G), dtype=torch.float32, device=logp_t.device)
    decision_loss = -(weight * torch.where(better, log_answer, log_abstain)).mean()
    p_abstain = log_abstain.detach().exp().reshape(-1, G).mean(1).cpu().numpy()
    return answer_logp - log_answer, decision_loss, p_abstain


def _kl_to_reference(ref: torch.nn.Module | None, logits: torch.Tensor, repeated: list[list[int]],
                     answers: list[list[int]], mask: torch.Tensor, cfg: PGConfig) -> torch.Tensor:
    """The policy's mean KL to the frozen reference over the answer tokens (0 without one)."""
    if ref is None or cfg.kl_coef <= 0:
        return torch.zeros((), device=logits.device)
    n_tokens = mask.sum().clamp(min=1)
    logp = F.log_softmax(logits, dim=-1)
    with torch.no_grad():
        ref_logits, _, _ = trainer_logits(ref, repeated, answers, cfg.pad_id)
        ref_logp = F.log_softmax(ref_logits, dim=-1)
    kl_tok = (logp.exp() * (logp - ref_logp)).sum(-1)
    return (kl_tok * mask).sum() / n_tokens


def _rates(grades: list[str], rewards: np.ndarray, p_abstain: np.ndarray | None,
           cfg: PGConfig) -> tuple[dict[str, float], np.ndarray]:
    """The step's reward and answer / abstain / correct / wrong rates, and per drawn answer whether
    it abstained. Under `factored` answers were drawn given answering, so the rates are the
    sampled policy's expected ones (`p_abstain`: each prompt's probability of abstaining)."""
    G = cfg.group_size
    n = len(grades)
    if p_abstain is not None:
        answering = 1.0 - p_abstain
        per_prompt = {g: np.array([x == g for x in grades], dtype=float).reshape(-1, G).mean(1)
                      for g in ("correct", "wrong")}
        rates = {"reward": float((answering * rewards.mean(1) + p_abstain * cfg.abstain_reward).mean()),
                 "answer_rate": float(answering.mean()), "abstain_rate": float(p_abstain.mean()),
                 "correct_rate": float((answering * per_prompt["correct"]).mean()),
                 "wrong_rate": float((answering * per_prompt["wrong"]).mean())}
        return rates, np.repeat(p_abstain, G)
    rates = {"reward": float(rewards.mean()), "answer_rate": sum(g != "abstain" for g in grades) / n,
             "abstain_rate": sum(g == "abstain" for g in grades) / n,
             "correct_rate": sum(g == "correct" for g in grades) / n,
             "wrong_rate": sum(g == "wrong" for g in grades) / n}
    return rates, np.array([g == "abstain" for g in grades], dtype=float)
