"""Candidate scoring as a trie in one pass equals scoring each candidate after its prompt alone."""

import numpy as np
import pytest
import torch

from nextlab.generate import score
from nextlab.model import GPT, GPTConfig
from nextlab.qa.answers import END_IDS, candidate_logprobs


def test_trie_scores_without_an_end_token_equal_the_candidates_alone():
    """`end_ids=None` (a value inside running text): log P(candidate tokens | prompt) only."""
    model = GPT(GPTConfig(vocab_size=40, block_size=32, n_layer=2, n_head=2, d_model=16),
                generator=torch.Generator().manual_seed(2)).eval()
    prompts = [[0, 7, 9, 11], [0, 5]]
    cands = [[[20, 21], [20, 22, 23], [30]], [[25], [25, 26]]]
    for prompt, mine, theirs in zip(prompts, cands, candidate_logprobs(model, prompts, cands, end_ids=None)):
        np.testing.assert_allclose(theirs, score(model, [prompt] * len(mine), mine), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("positional", ["learned", "rotary"])
def test_trie_scores_equal_one_candidate_at_a_time(positional):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=32, n_layer=2, n_head=2, d_model=16, positional=positional),
                generator=torch.Generator().manual_seed(1)).eval()
    prompts = [[0, 7, 9, 11], [0, 5]]  # different lengths: the shorter is left-padded
    # shared prefixes, and one candidate a prefix of another
    cands = [[[20, 21], [20, 22, 23], [20], [30, 31, 32, 33]], [[25], [25, 26], [27, 28]]]
    got = candidate_logprobs(model, prompts, cands)
    for prompt, mine, theirs in zip(prompts, cands, got):
        ends = [score(model, [prompt] * len(mine), [c + [end] for c in mine]) for end in END_IDS]
        expected = np.logaddexp(*[np.array(e) for e in ends])
        np.testing.assert_allclose(theirs, expected, rtol=1e-5, atol=1e-5)
