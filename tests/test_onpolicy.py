"""Sampler and trainer of a policy-gradient step: the same answers as `generate` draws, the
mismatch measured, and bitwise equality (KL exactly 0.0) under the batch-invariant mode."""

from __future__ import annotations

import pytest
import torch

from nextlab.generate import generate
from nextlab.model import GPT, GPTConfig
from nextlab.posttrain.onpolicy import mismatch, sample, trainer_logits

PROMPTS = [[0, 5, 6, 9], [0, 7], [0, 3, 3, 3, 3, 8], [0, 12, 4]] * 3


def _model(dtype=torch.float32, positional="learned"):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=48, block_size=32, n_layer=2, n_head=2, d_model=32, positional=positional)
    return GPT(cfg).to(dtype)


def test_default_sampler_draws_what_generate_draws():
    model = _model()
    got = sample(model, PROMPTS, 8, 0.7, eos_id=1, generator=torch.Generator().manual_seed(3))
    want = generate(model, PROMPTS, 8, temperature=0.7, eos_id=1, generator=torch.Generator().manual_seed(3))
    assert got.tokens == want.tokens
    # The kept logits are the ones the tokens were drawn from: their log-softmax is generate's log-prob.
    lp = torch.log_softmax(got.logits, -1)
    for row, (toks, lps) in enumerate(zip(want.tokens, want.logprobs)):
        assert torch.allclose(lp[row, torch.arange(len(toks)), toks], torch.tensor(lps), atol=1e-6)


@pytest.mark.parametrize("dtype,positional", [(torch.float32, "learned"), (torch.float32, "rotary"),
                                              (torch.bfloat16, "learned")])
def test_sampler_and_trainer_are_bitwise_equal_under_batch_invariance(dtype, positional):
    model = _model(dtype, positional)
    s = sample(model, PROMPTS, 10, 1.0, eos_id=1, generator=torch.Generator().manual_seed(5), batch_invariant=True)
    model.train()
    logits, targets, mask = trainer_logits(model, PROMPTS, s.tokens, batch_invariant=True)
    assert logits.requires_grad  # the trainer's pass trains
    assert torch.equal(s.logits[mask], logits.detach()[mask])
    m = mismatch(s.logits, logits, mask, 1.0, targets)
    assert m == {"logprob_diff_max": 0.0, "logprob_diff_mean": 0.0, "sampler_trainer_kl": 0.0}
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_the_mismatch_is_measured_not_assumed():
    # Hand-built logits: one token's distribution moved, the KL and |delta log-prob| are exact.
    sampler = torch.zeros(1, 2, 3)
    trainer = sampler.clone()
    trainer[0, 1] = torch.tensor([0.0, 0.0, 1.0])
    mask = torch.tensor([[True, True]])
    m = mismatch(sampler, trainer, mask, 1.0, torch.tensor([[0, 2]]))
    q = torch.log_softmax(torch.tensor([0.0, 0.0, 1.0]), -1)
    kl = float((torch.full((3,), 1 / 3) * (torch.log(torch.tensor(1 / 3)) - q)).sum())
    assert m["sampler_trainer_kl"] == pytest.approx(kl / 2)
    assert m["logprob_diff_max"] == pytest.approx(abs(float(torch.log(torch.tensor(1 / 3)) - q[2])))
    # The default kernels: the sampler's batched decode and the trainer's forward are compared as they are.
    model = _model()
    s = sample(model, PROMPTS, 10, 1.0, eos_id=1, generator=torch.Generator().manual_seed(5))
    logits, targets, mask = trainer_logits(model, PROMPTS, s.tokens)
    m = mismatch(s.logits, logits, mask, 1.0, targets)
    # (rounding can leave a KL of a few 1e-9 either side of 0)
    assert abs(m["sampler_trainer_kl"]) < 1e-6 and m["logprob_diff_max"] < 1e-3


def test_a_policy_gradient_step_is_exactly_on_policy_under_batch_invariance():
    from nextlab.posttrain.policy_gradient import PGConfig, pg_step

    reward = lambda i, toks: (1.0, "correct") if toks[:1] == [7] else (0.0, "wrong")  # noqa: E731
    logs = {}
    for invariant in (False, True):
        policy, ref = _model(), _model()
        cfg = PGConfig(group_size=4, temperature=0.7, kl_coef=0.05, max_new_tokens=6, batch_invariant=invariant)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        logs[invariant] = [pg_step(policy, ref, optimizer, PROMPTS[:4], reward, cfg, generator) for _ in range(3)]
    for log in logs[True]:  # every step: the trainer's log-probs are the sampler's bits
        assert log["sampler_trainer_kl"] == 0.0 and log["logprob_diff_max"] == 0.0
    for log in logs[False]:  # measured, whatever it is on this machine
        assert {"sampler_trainer_kl", "logprob_diff_max", "logprob_diff_mean"} <= set(log)
        assert log["logprob_diff_max"] >= log["logprob_diff_mean"] >= 0.0
