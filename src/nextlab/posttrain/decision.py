"""The answer-or-abstain decision taught directly: a reward-weighted fine-tune on the model's own
best guesses, the first phase of post-training under the binary and penalized schemes.

Under those schemes abstaining scores 0, a right answer 1 and a wrong one -c (binary c = 0,
penalized-t c = t/(1-t)). On a question the only choice that matters is whether to give the
model's best guess g (its most probable candidate value) or "I don't know". For each question of
the RL pool, g is graded against the gold answer and the better action becomes the target: g when
g is right (answering gains 1 over abstaining), "I don't know" when it is wrong (answering would
lose c). Targets are drawn in proportion to what the other action would cost (1 and c), so the
weighted loss is the policy's expected regret over the two actions. A model that minimises it
answers where its chance of being right exceeds c / (1 + c) = t: the threshold policy, except that
it must tell from the question alone how likely its guess is.

With `decision_targets: belief` the target is instead the better action by the model's own
probability of its guess (`belief_targets`): the threshold policy of the start model, distilled.

This is the exact expected policy gradient of the scheme's reward restricted to the two actions
that matter (reward-weighted regression, filtered behaviour cloning), where sampling would spend
most draws on values the model does not believe in. The policy-gradient phase that follows sees
the scheme's reward on sampled answers.

Under binary a wrong guess costs nothing (c = 0), so its "I don't know" target has weight 0 and is
never drawn: binary's phase teaches only "answer what you get right", and the policy gradient that
follows does the rest.

>>> decision_targets(["Oslo", "Lima", "Rome"], [True, False, False], wrong_cost=3.0)
(['Oslo', "I don't know", "I don't know"], [1.0, 3.0, 3.0])
>>> decision_targets(["Oslo", "Lima"], [True, False], wrong_cost=0.0)
(['Oslo', "I don't know"], [1.0, 0.0])
"""

from __future__ import annotations

from collections.abc import Sequence

from nextlab.config.posttrain import Scheme
from nextlab.data.world import IDK
from nextlab.posttrain.sft import Example


def wrong_cost(scheme: Scheme) -> float:
    """What a wrong answer costs against abstaining: 0 under binary, t/(1-t) under penalized-t.

    >>> from nextlab.config.posttrain import parse_scheme
    >>> wrong_cost(parse_scheme("penalized-0.75"))
    3.0
    """
    if scheme.kind == "binary":
        return 0.0
    if scheme.kind == "penalized":
        assert scheme.t is not None
        return scheme.t / (1.0 - scheme.t)
    raise ValueError(f"scheme {scheme.name!r} has no answer-or-abstain decision phase")


def decision_targets(
    guesses: Sequence[str], guess_correct: Sequence[bool], wrong_cost: float
) -> tuple[list[str], list[float]]:
    """Per question, the better of answering the best guess and abstaining, and its weight (the
    regret of the other action)."""
    targets = [g if right else IDK for g, right in zip(guesses, guess_correct)]
    weights = [1.0 if right else float(wrong_cost) for right in guess_correct]
    return targets, weights


def belief_targets(
    guesses: Sequence[str], guess_confidence: Sequence[float], wrong_cost: float
) -> tuple[list[str], list[float]]:
    """Per question, the better action by the model's own belief: its best guess where the guess's
    probability p (normalised over the candidate values) makes answering pay in expectation,
    p - (1 - p) c > 0, i.e. p > t; "I don't know" elsewhere. Every target weighs 1: the label is
    a function of the model's own output, not of an outcome it cannot see, so there is no noise for
    weights to average out. No gold answer enters.

    >>> belief_targets(["Oslo", "Lima"], [0.9, 0.6], wrong_cost=3.0)   # t = 0.75
    (['Oslo', "I don't know"], [1.0, 1.0])
    >>> belief_targets(["Oslo", "Lima"], [0.9, 0.05], wrong_cost=0.0)  # binary: always guess
    (['Oslo', 'Lima'], [1.0, 1.0])
    """
    t = wrong_cost / (1.0 + wrong_cost)
    targets = [g if p > t else IDK for g, p in zip(guesses, guess_confidence)]
    return targets, [1.0] * len(targets)


def recalibrated_targets(
    guesses: Sequence[str], guess_confidence: Sequence[float], guess_correct: Sequence[bool], wrong_cost: float,
    bins: int = 8,
) -> tuple[list[str], list[float]]:
    """Per question, the better action by the model's belief recalibrated on the outcomes: the
    questions are cut into `bins` equal-count bins of the guess's probability, each bin's share of
    right guesses is the chance of being right for every question in it, and the guess is the target
    where that chance exceeds t. Questions of similar confidence get the same label, so the
    outcome's noise is averaged out, and a model that is right more (or less) often than its
    probability says is taken at its record, not its word.

    >>> recalibrated_targets(list("abcd"), [0.2, 0.3, 0.6, 0.7], [False, True, True, True], 1.0, bins=2)
    (["I don't know", "I don't know", 'c', 'd'], [1.0, 1.0, 1.0, 1.0])
    """
    t = wrong_cost / (1.0 + wrong_cost)
    order = sorted(range(len(guesses)), key=lambda i: guess_confidence[i])
    chance = [0.0] * len(guesses)
    for b in range(bins):
        members = order[b * len(order) // bins : (b + 1) * len(order) // bins]
        if members:
            share = sum(bool(guess_correct[i]) for i in members) / len(members)
            for i in members:
                chance[i] = share
    targets = [g if c > t else IDK for g, c in zip(guesses, chance)]
    return targets, [1.0] * len(targets)


def decision_examples(
    prompts: Sequence[list[int]], answer_tokens: Sequence[list[int]], weights: Sequence[float]
) -> tuple[list[Example], list[float]]:
    """The examples with a positive weight, and their weights."""
    kept = [(Example(list(p), list(a)), float(w)) for p, a, w in zip(prompts, answer_tokens, weights) if w > 0]
    return [e for e, _ in kept], [w for _, w in kept]
