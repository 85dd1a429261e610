"""The mechanisms stage's measurements on hand-built cases: ablations that remove a known component,
attention weights that reproduce the model's own attention, head roles of a crafted prompt, and the
decoding metrics. The stage end to end runs in the smoke study (test_pipeline.py)."""

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from nextlab.config import Study
from nextlab.config.mechanisms import DecodingStrategy, MechanismsParams
from nextlab.mechanisms.ablation import Facts, ablated, components, mean_outputs, measure, run_ablations
from nextlab.mechanisms.decoding import distinct_n, repetition, sample, stated_values
from nextlab.mechanisms.heads import ROLES, head_table, prompt_roles, query_attention, role_shares
from nextlab.model import GPT, GPTConfig


def _model(positional: str = "learned", seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=50, block_size=24, n_layer=2, n_head=2, d_model=16, positional=positional))
    return model.eval()


def _self_predicted_facts(model: GPT, docs: int = 6, length: int = 10) -> Facts:
    """Documents the model itself continues greedily, so that its clean recall is 1 by construction;
    every document's tokens 4..5 are one 'fact', the rest are other tokens."""
    rows = []
    for d in range(docs):
        seq = [1, 10 + d]
        with torch.no_grad():
            while len(seq) < length:
                seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
        rows.append(seq)
    idx = torch.tensor(rows)
    value_token = torch.zeros_like(idx, dtype=torch.bool)
    value_token[:, 4:6] = True
    return Facts(idx=idx, real=torch.ones_like(idx, dtype=torch.bool), fact_doc=np.arange(docs),
                 fact_positions=[[4, 5]] * docs, fact_mentions=np.array([1, 4] * (docs // 2)),
                 fact_attribute=["birth_city"] * docs, value_token=value_token)


def test_zero_ablation_equals_removing_the_weights():
    model = _model()
    idx = torch.randint(0, 50, (3, 12))
    with torch.no_grad():
        with ablated(model, "mlp.1", None):
            hooked_mlp = model(idx)
        with ablated(model, "head.0.1", None):
            hooked_head = model(idx)
        removed = _model()
        removed.blocks[1].mlp.c_proj.weight.zero_()
        assert torch.allclose(removed(idx), hooked_mlp, atol=1e-6)
        removed = _model()
        removed.blocks[0].attn.c_proj.weight[:, 8:16] = 0  # head 1's slice of the projection's input
        assert torch.allclose(removed(idx), hooked_head, atol=1e-6)


def test_mean_ablation_feeds_the_clean_mean_and_restores_the_model():
    model = _model()
    facts = _self_predicted_facts(model)
    means = mean_outputs(model, facts)
    assert set(means) == set(components(model))
    assert means["head.1.0"].shape == (8,) and means["mlp.0"].shape == (16,)
    outputs = []
    handle = model.blocks[0].mlp.register_forward_hook(lambda m, i, o: outputs.append(o))
    with torch.no_grad():
        model(facts.idx)
    handle.remove()
    assert torch.allclose(means["mlp.0"], outputs[0].reshape(-1, 16).mean(0), atol=1e-6)
    with torch.no_grad(), ablated(model, "mlp.0", means["mlp.0"]):
        # A hook added after the ablation's sees what the rest of the network receives.
        handle = model.blocks[0].mlp.register_forward_hook(lambda m, i, o: outputs.append(o))
        model(facts.idx)
        handle.remove()
    assert torch.allclose(outputs[1], means["mlp.0"].expand_as(outputs[1]))
    assert not model.blocks[0].mlp._forward_hooks


def test_ablations_find_the_component_that_carries_recall_and_spare_a_dead_one():
    model = _model()
    with torch.no_grad():
        model.blocks[1].attn.c_proj.weight[:, :8] = 0  # head 1.0 contributes nothing
        facts = _self_predicted_facts(model)
    assert measure(model, facts).recalled.all()
    rows = {(r["component"], r["facts"]): r for r in run_ablations(model, facts, "zero", samples=50, seed=0)}
    assert rows[("none", "all")]["recall"] == 1.0 and rows[("none", "all")]["recall_delta"] == 0.0
    dead = rows[("head.1.0", "all")]
    assert dead["recall_delta"] == 0.0 and dead["other_loss_delta"] == pytest.approx(0.0, abs=1e-6)
    # Without any layer-0 MLP the self-predicted continuations are not all reproduced.
    live = rows[("mlp.0", "all")]
    assert live["recall_delta"] < 0 and live["recall_delta_lo"] <= live["recall_delta"] <= live["recall_delta_hi"]
    assert abs(live["other_loss_delta"]) > 1e-4  # a random model's other tokens move either way
    assert {b for _, b in rows} == {"all", "1", "4"}
    assert rows[("mlp.0", "1")]["n_facts"] + rows[("mlp.0", "4")]["n_facts"] == rows[("mlp.0", "all")]["n_facts"]


@pytest.mark.parametrize("positional", ["learned", "rotary"])
def test_query_attention_reproduces_the_models_own_attention(positional):
    model = _model(positional)
    prompts = [[1, 5, 7, 9, 11], [1, 8, 3]]
    weights = query_attention(model, prompts)
    assert [w.shape for w in weights] == [(2, 2, 5), (2, 2, 3)]
    assert all(np.allclose(w.sum(-1), 1) for w in weights)
    captured = {}
    handles = [b.attn.c_proj.register_forward_pre_hook(lambda m, a, i=i: captured.setdefault(i, a[0]))
               for i, b in enumerate(model.blocks)]
    values = {}
    handles += [b.attn.c_attn.register_forward_hook(lambda m, a, o, i=i: values.setdefault(i, o))
                for i, b in enumerate(model.blocks)]
    for prompt, w in zip(prompts, weights):
        captured.clear()
        values.clear()
        with torch.no_grad():
            model(torch.tensor([prompt]))
        for layer in range(2):
            v = values[layer][0, :, 32:].view(len(prompt), 2, 8)  # (T, heads, hs)
            mixed = torch.einsum("ht,thd->hd", torch.tensor(w[layer], dtype=torch.float32), v)
            assert torch.allclose(mixed.reshape(-1), captured[layer][0, -1], atol=1e-5)
    for handle in handles:
        handle.remove()


def test_heads_with_zero_queries_attend_uniformly_at_chance():
    model = _model()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.c_attn.weight[:16] = 0  # q = 0: every allowed key scores the same
    roles = ["first", "other", "name", "name", "attribute", "previous", "self"]
    weights = query_attention(model, [[1, 2, 3, 4, 5, 6, 7]])
    shares, chance = role_shares(weights, [roles])
    assert np.allclose(shares[0], chance[0][None, None, :])
    assert np.allclose(chance[0], [2 / 7, 1 / 7, 1 / 7, 1 / 7, 1 / 7, 1 / 7])
    table = head_table(shares, chance, samples=20, seed=0)
    assert len(table) == 2 * 2 * len(ROLES)
    assert all(r["top"] == (r["role"] == "name") for r in table)


def test_prompt_roles_of_a_question():
    # "Where does Ada Quill work?": bos, <|question|>, Where, does, Ada, Quill, work?, <|answer|>
    offsets = [(0, 5), (5, 10), (10, 14), (14, 20), (20, 25), (25, 26)]
    roles = prompt_roles(offsets, name=(11, 20), attribute=None)
    assert roles == ["first", "other", "other", "other", "name", "name", "other", "previous", "self"]
    assert prompt_roles([], name=(0, 0), attribute=None) == ["first", "previous", "self"]


def test_decoding_measures():
    assert distinct_n(["a a a a"], 2) == pytest.approx(1 / 3)
    assert distinct_n([""], 2) != distinct_n([""], 2)  # NaN: no bigram at all
    assert repetition("one two three", 4) == 0.0
    assert repetition("a b c d a b c d", 4) == pytest.approx(1 / 5)
    vocab = {"birth_city": ["Ost", "Ostra"], "occupation": ["baker"]}
    assert stated_values("born in Ostra, a bakery", vocab) == {"birth_city": "Ostra"}
    assert stated_values("Ost and Ostra", vocab) == {"birth_city": "Ost"}


def test_sampling_is_seeded_and_greedy_is_the_argmax():
    model = _model()
    prompts = [[1, 5], [1, 6, 7]]
    greedy = DecodingStrategy(name="greedy", temperature=0.0)
    hot = DecodingStrategy(name="hot", temperature=1.5, top_p=0.9)
    first = sample(model, prompts, greedy, 5, seed=0)
    assert first == sample(model, prompts, greedy, 5, seed=123)
    seq = list(prompts[0])
    with torch.no_grad():
        for _ in range(5):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    assert first[0] == seq[2:]
    assert sample(model, prompts, hot, 5, seed=3) == sample(model, prompts, hot, 5, seed=3)


def test_params_are_checked():
    assert Study.model_validate({"study": "x"}).mechanisms.ablation == "mean"
    with pytest.raises(ValidationError, match="greedy decoding"):
        DecodingStrategy(name="g", temperature=0, top_k=5)
    with pytest.raises(ValidationError, match="repeat"):
        MechanismsParams(strategies=[{"name": "g", "temperature": 0}, {"name": "g", "temperature": 1}])
    with pytest.raises(ValidationError, match="needs the greedy"):
        MechanismsParams(strategies=[{"name": "hot", "temperature": 1}])
    with pytest.raises(ValidationError, match="ablation"):
        MechanismsParams(ablation="random")


def _world_and_tokenizer():
    from nextlab.config.data import DataParams
    from nextlab.data.corpus import qa_rows, synthetic_documents
    from nextlab.data.world import build_world
    from nextlab.tokenizer.bpe import train_bpe

    world = build_world(DataParams(n_people=40, n_unseen=16, mention_mix={1: 0.5, 4: 0.5}), seed=3)
    train, _ = synthetic_documents(world, qa_rows(world, {"finetune"}), 0, np.random.default_rng(0))
    return world, train_bpe([d["text"] for d in train], vocab_size=400)


def test_reading_documents_are_about_new_people_and_end_in_their_answer():
    from nextlab.data.corpus import reading_documents

    world, _ = _world_and_tokenizer()
    docs = reading_documents(world, 30, seed=3)
    assert len(docs) == 30 and {d["kind"] for d in docs} == {"reading"}
    names = {p.name for p in world.everyone}
    for doc in docs:
        bio, qa = doc["text"].split(" <|question|>")
        question, answer = qa.split("<|answer|> ")
        assert answer in bio and question.endswith("?")
        assert not any(name in doc["text"] for name in names)
    assert reading_documents(world, 30, seed=3) == docs


def test_in_context_answering_leaves_the_weights_unchanged():
    from nextlab.mechanisms.in_context import (
        CONDITIONS,
        answer_in_context,
        context_prompt,
        in_context_items,
        weights_hash,
    )
    from nextlab.qa.codec import QACodec
    from nextlab.tokenizer.bpe import ANSWER_ID, BOS_ID, QUESTION_ID

    world, tok = _world_and_tokenizer()
    strangers = [p for p in world.unseen if p.split == "eval"][:2]
    items = in_context_items(strangers, seed=0)
    assert len(items) == 2 * len(strangers[0].attributes)
    assert items[0]["answer"] in items[0]["context"] and items[0]["other_context"] == items[-1]["context"]
    prompt = context_prompt(tok, items[0]["context"], items[0]["question"])
    assert prompt[0] == BOS_ID and prompt[-1] == ANSWER_ID and prompt.count(QUESTION_ID) == 1
    bare = context_prompt(tok, None, items[0]["question"])
    assert bare == QACodec(tok).prompt(items[0]["question"])  # without a biography: the QA prompt
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.get_vocab_size(), block_size=256, n_layer=1, n_head=2, d_model=16)).eval()
    before = weights_hash(model)
    rows = answer_in_context(model, tok, QACodec(tok), items, max_answer_tokens=4)
    assert weights_hash(model) == before
    assert len(rows) == len(CONDITIONS) * len(items)
    assert {r["grade"] for r in rows} <= {"correct", "wrong", "abstain"}
    with torch.no_grad():
        model.wte.weight[0, 0] += 1.0
    assert weights_hash(model) != before
    tight = GPT(GPTConfig(vocab_size=tok.get_vocab_size(), block_size=16, n_layer=1, n_head=2, d_model=16)).eval()
    skipped = answer_in_context(tight, tok, QACodec(tok), items, max_answer_tokens=4)
    assert {r["grade"] for r in skipped if r["condition"] == "context"} == {"skipped"}


class _Tables:
    """What a figure function reads, from in-memory frames."""

    def __init__(self, frames: dict[str, pd.DataFrame]):
        self.frames = frames

    def parquet(self, path: str, columns) -> pd.DataFrame:
        return self.frames[path.rsplit("/", 1)[-1]]


def _ablation_row(component, recall_delta, lo, hi, other_delta):
    kind = "none" if component == "none" else component.split(".")[0]
    return {"component": component, "kind": kind, "layer": 0, "head": -1, "facts": "all", "n_facts": 400,
            "recall": 0.5 + recall_delta, "recall_delta": recall_delta, "recall_delta_lo": lo,
            "recall_delta_hi": hi, "other_loss": 1.0 + other_delta, "other_loss_delta": other_delta,
            "other_loss_delta_lo": other_delta - 0.01, "other_loss_delta_hi": other_delta + 0.01}


def test_ablation_verdict_leaves_out_a_component_that_breaks_the_model():
    import matplotlib.pyplot as plt

    from nextlab.report.figures.mechanisms import ablation

    table = pd.DataFrame([_ablation_row("none", 0, 0, 0, 0), _ablation_row("mlp.0", -0.5, -0.55, -0.45, 6.0),
                          _ablation_row("mlp.1", -0.3, -0.35, -0.25, 0.2),
                          _ablation_row("head.0.0", -0.05, -0.08, -0.02, 0.1)])
    drawn = ablation(_Tables({"ablation.parquet": table}), model="m")
    plt.close(drawn.figure)
    assert drawn.verdict.startswith("Supported: removing mlp.1") and "left out: mlp.0" in drawn.verdict
    table.loc[table["component"] == "head.0.0", ["recall_delta", "recall_delta_lo", "recall_delta_hi"]] = \
        [-0.3, -0.36, -0.24]
    drawn = ablation(_Tables({"ablation.parquet": table}), model="m")
    plt.close(drawn.figure)
    assert drawn.verdict.startswith("Not resolved")


def test_heads_verdict_counts_concentration_over_uniform_not_share():
    import matplotlib.pyplot as plt

    from nextlab.report.figures.mechanisms import heads

    chance = {"name": 0.5, "attribute": 0.06, "previous": 0.06, "first": 0.06, "self": 0.06, "other": 0.26}

    def head(layer, shares):
        top = max(shares, key=shares.get)
        return [{"layer": layer, "head": 0, "role": role, "share": s, "share_lo": s - 0.02, "share_hi": s + 0.02,
                 "chance": chance[role], "prompts": 100, "top": role == top} for role, s in shares.items()]

    # A head on the name (0.6 of its attention, but names are half the prompt) is no specialist;
    # one on the attribute word (0.4 against 0.06) is.
    rows = head(0, {"name": 0.6, "attribute": 0.1, "previous": 0.05, "first": 0.05, "self": 0.05, "other": 0.15})
    rows += head(1, {"name": 0.3, "attribute": 0.4, "previous": 0.05, "first": 0.05, "self": 0.05, "other": 0.15})
    drawn = heads(_Tables({"heads.parquet": pd.DataFrame(rows)}), model="m")
    plt.close(drawn.figure)
    assert drawn.verdict.startswith("Not resolved: 1 role(s)")
    rows += head(2, {"name": 0.2, "attribute": 0.05, "previous": 0.5, "first": 0.05, "self": 0.05, "other": 0.15})
    drawn = heads(_Tables({"heads.parquet": pd.DataFrame(rows)}), model="m")
    plt.close(drawn.figure)
    assert drawn.verdict.startswith("Supported: heads specialise in 2 different roles")
    assert "attribute: L1 H0" in drawn.verdict and "previous: L2 H0" in drawn.verdict and "name" not in drawn.verdict


class _TablesWithJson(_Tables):
    def __init__(self, frames: dict[str, pd.DataFrame], documents: dict[str, dict]):
        super().__init__(frames)
        self.documents = documents

    def json(self, path: str, keys) -> dict:
        return self.documents[path.rsplit("/", 1)[-1]]


def test_kalai_verdict_compares_the_forced_error_with_the_bound():
    """The figure draws the job's own rows and metrics: supported when the forced error sits above
    the singleton rate minus the ECE with intervals apart, contradicted below, else not resolved."""
    import matplotlib.pyplot as plt

    from nextlab.evaluate.kalai import bound_summary
    from nextlab.report.figures.mechanisms import kalai

    rng = np.random.default_rng(0)
    mentions = np.repeat([1, 4, 16], 200)
    confidence = np.clip(np.where(mentions == 1, 0.3, np.where(mentions == 4, 0.6, 0.95)) + rng.normal(0, 0.05, 600),
                         0.01, 1.0)
    rows = pd.DataFrame({"mentions": mentions, "confidence": confidence, "correct": rng.random(600) < confidence})

    def drawn_with(singleton_rate):
        metrics = {f"kalai_{k}": v for k, v in bound_summary(rows, singleton_rate, 10, 200, 0).items()}
        drawn = kalai(_TablesWithJson({"kalai.parquet": rows}, {"metrics.json": metrics}), model="m")
        plt.close(drawn.figure)
        return drawn, metrics

    drawn, metrics = drawn_with(1 / 3)  # forced error ~0.38 against a bound near 1/3 - ECE
    assert drawn.verdict.startswith("Supported"), drawn.verdict
    assert list(drawn.data["mentions"]) == ["1", "4", "16", "all"]
    assert drawn.data["forced_error"].iloc[-1] == pytest.approx(1 - rows["correct"].mean())
    bound = next(f for f in drawn.findings if f.key.endswith("kalai_bound"))
    assert bound.value == pytest.approx(1 / 3 - metrics["kalai_ece"])
    assert drawn_with(0.9)[0].verdict.startswith("Contradicted")
    assert drawn_with(0.4 + metrics["kalai_ece"])[0].verdict.startswith("Not resolved")
    vacuous = drawn_with(metrics["kalai_ece"] / 2)[0].verdict  # miscalibrated beyond the singleton rate
    assert vacuous.startswith("Not resolved: the bound is vacuous"), vacuous
