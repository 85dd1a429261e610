"""The GPT model: init loss, parameter count, attention paths, positions, cache, bad shapes."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from nextlab.config import validate_study
from nextlab.errors import ParamsError
from nextlab.model import GPT, GPTConfig

torch.set_num_threads(1)
POSITIONALS = ["learned", "rotary", "none"]


def tiny(**overrides) -> GPTConfig:
    base = dict(vocab_size=97, block_size=24, n_layer=2, n_head=2, d_model=16)
    return GPTConfig(**{**base, **overrides})


def model_pair(positional: str) -> tuple[GPT, GPT]:
    """The same weights behind the SDPA and the explicit attention path."""
    sdpa = GPT(tiny(positional=positional), generator=torch.Generator().manual_seed(0)).eval()
    explicit = GPT(tiny(positional=positional, attention="explicit")).eval()
    explicit.load_state_dict(sdpa.state_dict())
    return sdpa, explicit


def test_loss_at_init_is_about_ln_vocab():
    config = GPTConfig(vocab_size=512, block_size=32, n_layer=2, n_head=2, d_model=32)
    model = GPT(config, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 512, (8, 32), generator=g)
    targets = torch.randint(0, 512, (8, 32), generator=g)
    loss = F.cross_entropy(model(idx).reshape(-1, 512), targets.reshape(-1)).item()
    assert abs(loss - math.log(512)) < 0.05


def test_forward_with_targets_is_the_fp32_cross_entropy_bit_for_bit():
    model = GPT(tiny(), generator=torch.Generator().manual_seed(0)).eval()
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 97, (3, 12), generator=g)
    targets = torch.randint(0, 97, (3, 12), generator=g)
    targets[0, :4] = -100  # ignored, as SFT's prompt tokens are
    logits = model(idx)
    flat = logits.float().reshape(-1, 97), targets.reshape(-1)
    assert torch.equal(model(idx, targets), F.cross_entropy(*flat, ignore_index=-100))
    assert torch.equal(model.loss(logits, targets, reduction="sum"), F.cross_entropy(*flat, reduction="sum"))
    per_token = model.loss(logits, targets, reduction="none")
    assert per_token.shape == targets.shape and torch.all(per_token[0, :4] == 0)
    assert torch.equal(per_token, F.cross_entropy(*flat, reduction="none").view(3, 12))
    with pytest.raises(ValueError, match="targets and use_cache"):
        model(idx, targets, use_cache=True)


def test_configure_optimizer_decays_matrices_only_in_parameter_order():
    model = GPT(tiny(bias=True))
    decay, rest = model.configure_optimizer(lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95)).param_groups
    params = list(model.parameters())
    assert decay["params"] == [p for p in params if p.dim() >= 2] and decay["weight_decay"] == 0.1
    assert rest["params"] == [p for p in params if p.dim() < 2] and rest["weight_decay"] == 0.0
    assert decay["lr"] == 1e-3 and decay["betas"] == (0.9, 0.95) and decay["fused"] is None


def test_param_count_counts_the_tied_embedding_once():
    c = tiny(positional="learned", bias=False)
    model = GPT(c)
    d, h = c.d_model, c.mlp_ratio * c.d_model
    per_block = 2 * d + (d * 3 * d + d * d) + (d * h + h * d)  # 2 norms, attention, MLP
    expected = c.vocab_size * d + c.n_layer * per_block + d  # embedding (= output), blocks, final norm
    assert model.num_params() == expected
    assert model.num_params(non_embedding=False) == expected + c.block_size * d
    assert model._logits(torch.zeros(1, d)).shape == (1, c.vocab_size)
    assert model.flops_per_token() == 6 * expected + 12 * c.n_layer * d * c.block_size


def test_same_init_from_same_generator():
    a = GPT(tiny(), generator=torch.Generator().manual_seed(3))
    b = GPT(tiny(), generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("positional", POSITIONALS)
def test_sdpa_path_equals_explicit_path(positional):
    sdpa, explicit = model_pair(positional)
    idx = torch.randint(0, 97, (3, 20), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(sdpa(idx), explicit(idx), atol=1e-5, rtol=1e-5)
    mask = torch.ones(3, 20, dtype=torch.long)
    mask[0, :5] = 0
    mask[2, :11] = 0
    torch.testing.assert_close(sdpa(idx, attention_mask=mask), explicit(idx, attention_mask=mask),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positional", POSITIONALS)
@pytest.mark.parametrize("path", ["sdpa", "explicit"])
def test_left_padded_prompt_gets_the_logits_it_gets_alone(positional, path):
    model = GPT(tiny(positional=positional, attention=path), generator=torch.Generator().manual_seed(0)).eval()
    prompt = torch.randint(3, 97, (1, 9), generator=torch.Generator().manual_seed(4))
    alone = model(prompt)
    padded = torch.cat([torch.full((1, 6), 2), prompt], dim=1)
    mask = torch.cat([torch.zeros(1, 6, dtype=torch.long), torch.ones(1, 9, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(padded, attention_mask=mask)[:, 6:], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positional", POSITIONALS)
def test_kv_cache_continues_exactly_as_a_full_forward(positional):
    model = GPT(tiny(positional=positional), generator=torch.Generator().manual_seed(0)).eval()
    idx = torch.randint(0, 97, (2, 15), generator=torch.Generator().manual_seed(5))
    full = model(idx)
    first, cache = model(idx[:, :10], use_cache=True)
    assert len(cache) == 2 and cache[0][0].shape == (2, 2, 10, 8)
    rest = []
    for t in range(10, 15):
        logits, cache = model(idx[:, t : t + 1], past_kv=cache, use_cache=True)
        rest.append(logits)
    torch.testing.assert_close(torch.cat([first, *rest], dim=1), full, atol=1e-5, rtol=1e-5)


def test_dropout_only_in_training():
    model = GPT(tiny(dropout=0.5), generator=torch.Generator().manual_seed(0))
    idx = torch.randint(0, 97, (2, 8))
    model.eval()
    torch.testing.assert_close(model(idx), model(idx))
    model.train()
    assert not torch.equal(model(idx), model(idx))


def test_positions_beyond_block_size_are_refused():
    model = GPT(tiny(block_size=8))
    with pytest.raises(ValueError, match="block_size=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(torch.zeros(1, 4, dtype=torch.long), attention_mask=torch.ones(1, 5))


def test_config_round_trip_and_bad_dims():
    c = tiny(positional="rotary")
    assert GPTConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="not divisible"):
        tiny(d_model=30, n_head=4)
    with pytest.raises(ValueError, match="unknown model config keys"):
        GPTConfig.from_dict({**c.to_dict(), "n_embd": 3})


def test_params_reject_dims_that_do_not_divide():
    with pytest.raises(ParamsError, match=r"models\.odd.*d_model=30 is not divisible by n_head=4"):
        validate_study({"models": {"odd": {"d_model": 30, "n_head": 4}}})
