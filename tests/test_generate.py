"""Decoding and scoring: cache vs no cache, padded batches vs single prompts, sampling, eos."""

from __future__ import annotations

import pytest
import torch

from nextlab.generate import filter_logits, generate, pad, score, token_logprobs
from nextlab.model import GPT, GPTConfig

torch.set_num_threads(1)
PROMPTS = [[0, 7, 9, 11, 13, 40], [0, 5], [0, 8, 8, 30]]


def model(positional: str = "learned", attention: str = "sdpa") -> GPT:
    config = GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, d_model=32,
                       positional=positional, attention=attention)
    return GPT(config, generator=torch.Generator().manual_seed(0)).eval()


def close_lists(a: list[list[float]], b: list[list[float]], tol: float = 1e-5) -> bool:
    return all(len(x) == len(y) and all(abs(u - v) <= tol for u, v in zip(x, y)) for x, y in zip(a, b))


@pytest.mark.parametrize("positional", ["learned", "rotary", "none"])
def test_kv_cache_decoding_equals_no_cache_decoding(positional):
    m = model(positional)
    cached = generate(m, PROMPTS, 12, eos_id=None)
    uncached = generate(m, PROMPTS, 12, eos_id=None, use_cache=False)
    assert cached.tokens == uncached.tokens
    assert close_lists(cached.logprobs, uncached.logprobs)
    assert all(len(t) == 12 for t in cached.tokens)


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_padded_batch_equals_single_prompts(attention):
    m = model("rotary", attention)
    batch = generate(m, PROMPTS, 10, eos_id=None)
    for i, prompt in enumerate(PROMPTS):
        alone = generate(m, [prompt], 10, eos_id=None)
        assert alone.tokens[0] == batch.tokens[i]
        assert close_lists(alone.logprobs, [batch.logprobs[i]])


def test_logprobs_agree_with_scoring_and_a_full_forward():
    m = model()
    out = generate(m, PROMPTS, 6, eos_id=None)
    assert close_lists(token_logprobs(m, PROMPTS, out.tokens), out.logprobs)
    # log P(continuation) by hand from one forward pass of prompt + continuation
    seq = torch.tensor([PROMPTS[1] + out.tokens[1]])
    logp = torch.log_softmax(m(seq), -1)[0]
    by_hand = sum(logp[len(PROMPTS[1]) - 1 + j, t].item() for j, t in enumerate(out.tokens[1]))
    assert score(m, [PROMPTS[1]], [out.tokens[1]])[0] == pytest.approx(by_hand, abs=1e-4)
    # batch size does not change the result beyond rounding
    assert score(m, PROMPTS, out.tokens, batch_size=1) == pytest.approx(score(m, PROMPTS, out.tokens), abs=1e-4)


def test_candidate_scores_give_a_distribution():
    m = model()
    candidates = [[10, 1], [11, 12, 1], [13, 1]]
    probs = torch.tensor(score(m, [[0, 3, 4]] * 3, candidates)).softmax(0)
    assert probs.sum().item() == pytest.approx(1.0)
    assert token_logprobs(m, [[0]], [[]]) == [[]]


def test_eos_stops_each_prompt_and_is_reported():
    m = model()
    free = generate(m, PROMPTS, 8, eos_id=None)
    eos = free.tokens[0][2]  # the token prompt 0 emits third: make it the end of text
    out = generate(m, PROMPTS, 8, eos_id=eos)
    first = free.tokens[0].index(eos)
    assert out.tokens[0] == free.tokens[0][: first + 1]
    assert out.finished[0] and out.completion(0) == free.tokens[0][:first]
    for i in range(len(PROMPTS)):  # other prompts stop at their first eos, or run to the limit
        expected = free.tokens[i][: free.tokens[i].index(eos) + 1] if eos in free.tokens[i] else free.tokens[i]
        assert out.tokens[i] == expected
        assert out.finished[i] == (eos in free.tokens[i])


def test_sampling_is_reproducible_and_filters_reduce_to_greedy():
    m = model()
    greedy = generate(m, PROMPTS, 8, eos_id=None)
    a = generate(m, PROMPTS, 8, temperature=1.0, eos_id=None, generator=torch.Generator().manual_seed(1))
    b = generate(m, PROMPTS, 8, temperature=1.0, eos_id=None, generator=torch.Generator().manual_seed(1))
    assert a.tokens == b.tokens
    top1 = generate(m, PROMPTS, 8, temperature=1.0, top_k=1, eos_id=None, generator=torch.Generator().manual_seed(2))
    nucleus = generate(m, PROMPTS, 8, temperature=0.7, top_p=1e-6, eos_id=None,
                       generator=torch.Generator().manual_seed(3))
    assert top1.tokens == greedy.tokens == nucleus.tokens


def test_filter_logits():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[True, False, False, True]]
    # probabilities 0.644, 0.237, 0.087, 0.032: the nucleus of 0.8 is the first two
    kept = ~torch.isinf(filter_logits(logits, top_p=0.8))
    assert kept.tolist() == [[False, True, True, False]]


def test_pad_and_limits():
    idx, mask = pad([[5, 6, 7], [8]], pad_id=2, left=True)
    assert idx.tolist() == [[5, 6, 7], [2, 2, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    m = model()
    out = generate(m, [[0] * 30], 10, eos_id=None)  # block_size 32 leaves room for 2
    assert len(out.tokens[0]) == 2
    with pytest.raises(ValueError, match="does not fit"):
        generate(m, [[0] * 33], 1)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        generate(m, [[0, 64]], 1)
    with pytest.raises(ValueError, match="at least one token"):
        score(m, [[]], [[1]])
