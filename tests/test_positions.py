"""The positions stage on hand-built cases: an order-blind model that truly cannot see order, the
relations of the world, the probes' bookkeeping, the figure's verdicts. End to end it runs in the
smoke study (test_pipeline.py)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from nextlab.config import DataParams, Study
from nextlab.config.positions import variant_shape
from nextlab.data.corpus import relation_documents
from nextlab.data.templates import RELATION_TEMPLATES, render_relation
from nextlab.data.world import World, build_world
from nextlab.errors import InputFileError, ParamsError
from nextlab.generate import token_logprobs
from nextlab.model import GPT, GPTConfig
from nextlab.positions.probes import control_pairs, order_rows
from nextlab.positions.stage import variant_metrics


def _model(variant: str, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, d_model=16,
                         **variant_shape(variant))).eval()


def test_the_order_blind_model_sees_a_set_and_the_causal_one_does_not():
    idx = torch.randint(2, 40, (1, 9))
    perm = torch.randperm(9)
    with torch.no_grad():
        blind = _model("order_blind")
        # Permuting the input permutes the outputs and changes nothing else: no order reaches it.
        assert torch.allclose(blind(idx[:, perm]), blind(idx)[:, perm], atol=1e-5)
        nope = _model("none")
        # Without positions but with the causal mask, the last position already depends on order.
        assert not torch.allclose(nope(idx[:, perm])[:, -1], nope(idx[:, perm.sort().values])[:, -1], atol=1e-4)


def test_a_non_causal_model_is_scored_through_a_padding_mask_and_never_decodes():
    blind = _model("order_blind")
    short, long = [1, 5, 6], [1, 7, 8, 9, 10, 11]
    alone = token_logprobs(blind, [[1]], [short[1:]])
    padded = token_logprobs(blind, [[1], [1]], [short[1:], long[1:]])
    assert np.allclose(alone[0], padded[0], atol=1e-5)
    with pytest.raises(ValueError, match="non-causal"):
        blind(torch.tensor([[1, 2]]), use_cache=True)


def test_relations_are_disjoint_pairs_of_seen_people_written_mentor_first():
    params = DataParams(n_people=40, n_unseen=8, relations=50, relation_mentions=4)
    world = build_world(params, seed=3)
    pairs = [(r["mentor"], r["mentee"]) for r in world.relations]
    people = [pid for pair in pairs for pid in pair]
    assert len(pairs) == 20 and len(set(people)) == 40  # capped at half the seen people, each in one
    assert not {(b, a) for a, b in pairs} & set(pairs)
    # The people are those of a world without relations: relations draw from a stream of their own.
    assert build_world(params.model_copy(update={"relations": 0}), seed=3).people == world.people
    docs = relation_documents(world, 4, seed=3)
    assert len(docs) == 80
    names = {p.person_id: p.name for p in world.people}
    first = docs[0]["text"]
    mentor, mentee = names[docs[0]["person"]], names[docs[0]["mentee"]]
    assert first.index(mentor) < first.index(mentee) and not first.startswith(mentor)


def test_world_files_are_versioned(tmp_path):
    world = build_world(DataParams(n_people=40, n_unseen=8, relations=3), seed=1)
    world.save(tmp_path / "world.json")
    assert World.load(tmp_path / "world.json").relations == world.relations
    raw = world.to_json() | {"version": 1}
    (tmp_path / "old.json").write_text(json.dumps(raw))
    with pytest.raises(InputFileError, match="version 1 is not supported"):
        World.load(tmp_path / "old.json")


def test_both_directions_of_a_relation_hold_the_same_tokens(tmp_path):
    from nextlab.tokenizer import train_bpe

    forward = [render_relation(v, "Ada Quill", "Bo Renk") for v in range(len(RELATION_TEMPLATES))]
    reverse = [render_relation(v, "Bo Renk", "Ada Quill") for v in range(len(RELATION_TEMPLATES))]
    tok = train_bpe(forward * 20 + reverse * 20, vocab_size=300)
    for f, r in zip(forward, reverse):
        assert sorted(tok.encode(f, add_special_tokens=False).ids) == sorted(tok.encode(r, add_special_tokens=False).ids)


def test_order_rows_score_both_directions_and_controls_are_unrelated(tmp_path):
    from nextlab.tokenizer import train_bpe

    names = {"a": "Ada Quill", "b": "Bo Renk", "c": "Cy Ostra", "d": "Di Vel"}
    tok = train_bpe([render_relation(v, x, y) for v in range(3) for x in names.values() for y in names.values()],
                    vocab_size=300)
    model = GPT(GPTConfig(vocab_size=tok.get_vocab_size(), block_size=32, n_layer=1, n_head=1, d_model=8)).eval()
    controls = control_pairs(list(names), {"a", "b"}, seed=0)
    assert len(controls) == 1 and set(controls[0]) == {"c", "d"}
    rows = pd.DataFrame(order_rows(model, tok, names, [{"mentor": "a", "mentee": "b"}], controls))
    assert list(rows["kind"]) == ["relation", "control"]
    assert np.allclose(rows["margin"], rows["logp_forward"] - rows["logp_reverse"])
    assert list(rows["prefers_forward"]) == list(rows["margin"] > 0)


def test_variant_metrics():
    recall = pd.DataFrame({"mentions": [1, 1, 4, 4], "correct": [True, False, True, True]})
    order = pd.DataFrame({"kind": ["relation", "relation", "control"], "prefers_forward": [True, False, True],
                          "margin": [2.0, -1.0, 0.5]})
    m = variant_metrics(recall, order)
    assert m["recall"] == 0.75 and m["recall_k1"] == 0.5 and m["recall_k4"] == 1.0
    assert m["order_relation_prefers_forward"] == 0.5 and m["order_relation_margin"] == 0.5
    assert m["order_control_prefers_forward"] == 1.0


def test_rotary_variants_need_an_even_head_size():
    from nextlab.config import validate_study

    raw = {"models": {"m": {"n_head": 4, "d_model": 12}}}  # head size 3
    with pytest.raises(ParamsError, match="rotary needs an even head size"):
        validate_study(raw)
    validate_study(raw | {"positions": {"variants": ["learned", "none", "order_blind"]}})
    Study()  # the defaults are consistent


def _verdict(shares: dict[str, float], n: int = 100) -> str:
    from nextlab.report.figures.positions import _verdict as verdict
    from nextlab.report.stats import proportion

    true_dir = {v: proportion(v, v, round(s * n), n) for v, s in shares.items()}
    control = {v: proportion(v, v, n // 2, n) for v in shares}
    return verdict(true_dir, control)


def test_order_verdicts():
    assert _verdict({"learned": 0.97, "none": 0.9, "order_blind": 0.5}).startswith("Supported")
    assert "the mask alone carries order" in _verdict({"learned": 0.97, "none": 0.9, "order_blind": 0.5})
    assert _verdict({"learned": 0.9, "order_blind": 0.92}).startswith("Contradicted")
    assert _verdict({"learned": 0.55, "order_blind": 0.5}).startswith("Not resolved")
    assert _verdict({"learned": 0.9}).startswith("Not resolved")
