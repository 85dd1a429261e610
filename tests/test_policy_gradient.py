"""The policy-gradient core on a toy problem: a tiny GPT where one answer token is rewarded."""

import copy

import numpy as np
import pytest
import torch

from nextlab.model import GPT, GPTConfig
from nextlab.posttrain.policy_gradient import PGConfig, group_advantages, pg_step

REWARDED = 7
LR = 0.03  # the toy problem's optimizer lr (pg_step takes the optimizer; PGConfig has no lr)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, d_model=16),
               generator=torch.Generator().manual_seed(seed))


def reward_fn(i, toks):
    return (1.0, "correct") if toks[:1] == [REWARDED] else (0.0, "wrong")


def run(steps, kl_coef, seed=1):
    torch.set_num_threads(1)
    policy = tiny_model()
    ref = copy.deepcopy(policy)
    cfg = PGConfig(group_size=16, temperature=1.0, kl_coef=kl_coef, max_new_tokens=1)
    opt = torch.optim.AdamW(policy.parameters(), lr=LR, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    return policy, [pg_step(policy, ref, opt, [[0, 3], [0, 4]], reward_fn, cfg, gen) for _ in range(steps)]


def prob_of_rewarded(model):
    with torch.no_grad():
        return model(torch.tensor([[0, 3]]))[0, -1].softmax(-1)[REWARDED].item()


def test_group_advantages():
    adv = group_advantages(np.array([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]]))
    assert adv.tolist() == [[0.5, -0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]


def test_policy_gradient_raises_reward_on_a_toy_problem():
    before = prob_of_rewarded(tiny_model())
    policy, logs = run(30, kl_coef=0.0)
    assert before < 0.2
    assert np.mean([l["reward"] for l in logs[:3]]) < 0.3
    assert np.mean([l["reward"] for l in logs[-3:]]) > 0.9
    assert prob_of_rewarded(policy) > 0.9


def test_kl_penalty_holds_the_policy_near_the_reference():
    free, free_logs = run(30, kl_coef=0.0)
    held, held_logs = run(30, kl_coef=5.0)
    # the KL is logged; a heavy penalty keeps it and the drift small
    assert held_logs[-1]["kl"] < free_logs[-1]["kl"] or free_logs[-1]["kl"] == 0.0
    assert prob_of_rewarded(held) < prob_of_rewarded(free)


def test_pg_step_is_seeded_and_logs():
    _, a = run(3, kl_coef=0.1, seed=5)
    _, b = run(3, kl_coef=0.1, seed=5)
    assert a == b
    assert set(a[0]) >= {"reward", "answer_rate", "abstain_rate", "kl"}
    assert a[0]["answer_rate"] + a[0]["abstain_rate"] == pytest.approx(1.0)


def test_equal_rewards_in_every_group_leave_the_policy_unchanged():
    torch.set_num_threads(1)
    policy = tiny_model()
    before = copy.deepcopy(policy.state_dict())
    cfg = PGConfig(group_size=4, temperature=1.0, kl_coef=0.0, max_new_tokens=2)
    opt = torch.optim.SGD(policy.parameters(), lr=1.0)
    pg_step(policy, None, opt, [[0, 3]], lambda i, t: (1.0, "correct"), cfg, torch.Generator().manual_seed(0))
    for name, value in policy.state_dict().items():
        torch.testing.assert_close(value, before[name])


ABSTAIN = 5


def test_versus_abstain_advantages_hand_computed():
    from nextlab.posttrain.policy_gradient import versus_abstain_advantages

    rewards = np.array([[1.0, -3.0, 0.0, 0.0], [-3.0, -3.0, -3.0, 0.0]])
    # answers keep their reward against abstaining (0); abstentions are the baseline: 0
    assert versus_abstain_advantages(rewards, 0.0).tolist() == rewards.tolist()
    # the group baseline instead credits the abstention of a mostly wrong group with +2.25
    assert group_advantages(rewards)[1].tolist() == [-0.75, -0.75, -0.75, 2.25]
    # calibrated: "I don't know" stated at 0 scores 0; a scheme whose abstention scores -0.5
    assert versus_abstain_advantages(np.array([[0.5, -0.5]]), -0.5).tolist() == [[1.0, 0.0]]


def test_versus_abstain_answers_where_it_knows_and_abstains_where_it_does_not():
    """Prompt [0, 3] has a right answer (token 7); on [0, 4] every answer is wrong. Under a
    penalized reward (t = 0.75: wrong costs 3) the policy learns to answer the first and abstain
    (token 5) on the second."""
    torch.set_num_threads(1)
    policy = tiny_model()
    cfg = PGConfig(group_size=16, temperature=1.0, kl_coef=0.0, max_new_tokens=1, advantage="vs_abstain")
    opt = torch.optim.AdamW(policy.parameters(), lr=LR, weight_decay=0.0)
    gen = torch.Generator().manual_seed(2)

    def penalized(i, toks):
        if toks[:1] == [ABSTAIN]:
            return 0.0, "abstain"
        return (1.0, "correct") if i == 0 and toks[:1] == [REWARDED] else (-3.0, "wrong")

    for _ in range(40):
        pg_step(policy, None, opt, [[0, 3], [0, 4]], penalized, cfg, gen)
    with torch.no_grad():
        probs = policy(torch.tensor([[0, 3], [0, 4]]))[:, -1].softmax(-1)
    assert probs[0, REWARDED] > 0.8
    assert probs[1, ABSTAIN] > 0.8
    with pytest.raises(ValueError, match="advantage"):
        pg_step(policy, None, opt, [[0, 3]], penalized, PGConfig(advantage="nope", max_new_tokens=1), gen)


def test_factored_step_learns_the_decision_and_never_samples_an_abstention():
    """The same toy problem under advantage='factored': answers are drawn given answering (the
    abstain token is never drawn first), yet the policy's own probability of abstaining rises on
    [0, 4], where every answer is wrong, and falls on [0, 3], where token 7 is right."""
    torch.set_num_threads(1)
    policy = tiny_model()
    cfg = PGConfig(group_size=16, temperature=1.0, kl_coef=0.0, max_new_tokens=1, advantage="factored",
                   abstain_token=ABSTAIN, reward_range=4.0)
    opt = torch.optim.AdamW(policy.parameters(), lr=LR, weight_decay=0.0)
    gen = torch.Generator().manual_seed(2)
    drawn = []

    def penalized(i, toks):
        drawn.append(toks[0])
        if toks[:1] == [ABSTAIN]:
            return 0.0, "abstain"
        return (1.0, "correct") if i == 0 and toks[:1] == [REWARDED] else (-3.0, "wrong")

    per_answer: list[float] = []
    logs = [pg_step(policy, None, opt, [[0, 3], [0, 4]], penalized, cfg, gen, per_answer) for _ in range(60)]
    with torch.no_grad():
        probs = policy(torch.tensor([[0, 3], [0, 4]]))[:, -1].softmax(-1)
    assert ABSTAIN not in drawn and len(drawn) == 60 * 2 * 16
    assert probs[0, REWARDED] > 0.8 and probs[0, ABSTAIN] < 0.1
    assert probs[1, ABSTAIN] > 0.8
    # The log reports the sampled policy's expected rates: its probability of abstaining per prompt.
    assert len(per_answer) == 60 * 2 * 16 and len(set(per_answer[-32:-16])) == 1
    assert logs[-1]["abstain_rate"] == pytest.approx(np.mean(per_answer[-32:]))
    assert logs[-1]["answer_rate"] + logs[-1]["abstain_rate"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="abstain_token"):
        pg_step(policy, None, opt, [[0, 3]], penalized, PGConfig(advantage="factored", max_new_tokens=1), gen)


def test_factored_targets_leave_values_alone_when_every_answer_scores_the_same():
    """A group whose answers all score alike gives its values no push (the value advantage is
    centred); the decision still learns abstaining (all wrong) or answering (all right)."""
    from nextlab.posttrain.policy_gradient import factored_targets

    adv, answer, weight = factored_targets(np.array([[-3.0, -3.0, -3.0], [1.0, 1.0, 1.0]]), 0.0, 4.0)
    assert adv.tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    assert answer.tolist() == [False, True]
    assert weight.tolist() == [0.75, 0.25]
    with pytest.raises(ValueError, match="reward_range"):
        factored_targets(np.zeros((1, 2)), 0.0, 0.0)
