"""The study's measuring, against hand-built cases whose answer is known: a model whose logits
flip at batch size >= 3 by construction, and small tables. Nothing here depends on whether this
machine's kernels happen to change bits with the batch size."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from nextlab.config.nondeterminism import NondeterminismParams
from nextlab.nondeterminism.decode import decode_batch, pad_batch, prefill_logits
from nextlab.nondeterminism.measures import compare_logits, first_divergence, top2_margin, truncate, unique_count
from nextlab.nondeterminism.metrics import job_metrics
from nextlab.nondeterminism.prompts import Prompt, bio_opening, choose_targets
from nextlab.nondeterminism.study import Models, Runner, unique_completions

EOS, V = 1, 16
NUDGE = 2.0**-19  # what batching adds to token 8's logit: far below every margin but one


class LookupModel(torch.nn.Module):
    """Next-token logits are a table lookup of the current token; from batch size 3 on, token 8
    gets a last-bits nudge. After token 6 the top two (7, then 8) are 2^-20 apart, so the nudge
    flips exactly that step: alone 5 -> 6 7 9 <eos>, in a batch of >= 3: 5 -> 6 8 10 <eos>."""

    def __init__(self, nudge_from: int | None = 3, dtype=torch.float32):
        super().__init__()
        table = torch.zeros(V, V, dtype=torch.float64)
        table[:, EOS] = 1.0  # unknown tokens end the text
        for src, dst in [(5, 6), (7, 9), (9, EOS), (8, 10), (10, EOS), (11, EOS), (12, 11)]:
            table[src] = 0.0
            table[src, dst] = 1.0
        table[6] = 0.0
        table[6, 7], table[6, 8] = 1.0, 1.0 - 2.0**-20
        self.table = torch.nn.Parameter(table.to(dtype), requires_grad=False)
        self.nudge_from = nudge_from
        self.config = type("Config", (), {"vocab_size": V, "block_size": 64})()

    def forward(self, idx, attention_mask=None, past_kv=None, use_cache=False):
        logits = self.table[idx].clone()
        if self.nudge_from is not None and idx.size(0) >= self.nudge_from:
            logits[..., 8] += NUDGE
        return (logits, None) if use_cache else logits


def P(pid: str, tokens, kind: str = "qa") -> Prompt:
    return Prompt(pid, kind, pid, tuple(tokens), "gold" if kind == "qa" else None)


ALONE, FLIPPED = [6, 7, 9, EOS], [6, 8, 10, EOS]


def grader(prompt: Prompt, tokens: list[int]) -> str | None:
    if prompt.kind != "qa":
        return None
    return "correct" if list(tokens) == ALONE else "wrong"


def run(nudge_from=3, paddings=("none", "left", "right"), **params):
    targets = [P("q1", [0, 5]), P("q2", [0, 3, 5]), P("b1", [0, 4, 5], "bio")]
    pool = targets + [P(f"n{i}", [0] + [12] * (i % 4) + [11]) for i in range(8)]
    params = {"stop_at_eos": True, "decode_from_free": False, **params}
    p = NondeterminismParams(batch_sizes=(1, 2, 3, 4), paddings=paddings, max_new_tokens=6, repeat_prompts=2,
                             repeat_requests=6, **params)
    models = Models(default=LookupModel(nudge_from), reference=LookupModel(None, torch.float64))
    tables = Runner(models, targets, pool, p, seed=0, eos_id=EOS, grader=grader).measure().frames()
    tables["unique"] = unique_completions(tables["completions"], EOS)
    metrics = job_metrics(tables["logits"], tables["completions"], tables["timing"], tables["unique"],
                          list(p.batch_sizes), list(p.cache_modes), steps=tables["steps"])
    return tables, metrics


def test_the_lookup_model_does_what_it_says():
    model = LookupModel()
    assert decode_batch(model, [[0, 5]], "none", 6, EOS)[0].tokens == ALONE
    assert decode_batch(model, [[0, 5], [0, 11], [0, 12, 11]], "left", 6, EOS)[0].tokens == FLIPPED


def test_a_known_flip_is_measured_where_it_happens():
    tables, m = run()
    logits = tables["logits"]
    first = logits[(logits["run"] == "first") & (logits["measure"].isin(["prefill", "decode"]))]
    # Every step's logits differ from batch 1 at b >= 3 (the nudge is everywhere), none at b = 2.
    assert (first.loc[first["batch_size"] == 2, "steps_not_equal"] == 0).all()
    at3 = first[first["batch_size"] >= 3]
    assert (at3["steps_not_equal"] == at3["steps"]).all()
    assert (at3["max_abs_diff"] == NUDGE).all()
    # Exactly one flip per teacher-forced run, at step 1 (the near tie after token 6).
    assert (at3["flips"] == 1).all() and (at3["first_flip"] == 1).all()
    assert (at3["min_margin"] == 2.0**-20).all()
    for mode in ("prefill", "decode"):
        assert m[f"{mode}_flip_rate_b2"] == 0 and m[f"{mode}_not_equal_share_b2"] == 0
        assert m[f"{mode}_flip_rate_b3"] == m[f"{mode}_flip_rate_b4"] == pytest.approx(1 / 4)
        assert m[f"{mode}_not_equal_share_b3"] == 1.0
        assert m[f"{mode}_max_abs_diff"] == NUDGE
        # The drift (2^-19 everywhere at b >= 3) exceeds the margin (2^-20) only at the near tie:
        # the predicted flips are the observed ones, and 2 of 3 batch sizes predict a change.
        assert m[f"{mode}_predicted_flip_rate"] == m[f"{mode}_flip_rate"] == pytest.approx(1 / 6)
        assert m[f"{mode}_possible_flip_rate"] == pytest.approx(1 / 6)
        assert m[f"{mode}_predicted_changed_rate"] == m[f"{mode}_prompts_with_flip"] == pytest.approx(2 / 3)
    # Free running: the completion diverges at token 1 at b >= 3, and matches alone at b = 2.
    assert m["free_differ_rate_b2"] == 0 and m["free_differ_rate_b3"] == 1 and m["free_differ_rate_b4"] == 1
    # 3 targets x 3 paddings per batch size; none changed at b = 2: the exact 95% bound says < 28.3%.
    assert m["free_completions_b2"] == 9 and m["free_differ_upper_b2"] == pytest.approx(1 - 0.05 ** (1 / 9))
    assert m["free_power_b2"] == pytest.approx(1 - 0.99**9) and m["free_differ_upper_b3"] == 1.0
    assert m["free_first_divergence_mean"] == 1
    comp = tables["completions"]
    batched = comp[(comp["run"] == "first") & (comp["batch_size"] >= 3)]
    assert set(batched["completion"]) == {" ".join(map(str, FLIPPED))}
    # Against float64 (no nudge): alone agrees, batched at b >= 3 does not.
    assert m["alone_differ_fp64_rate"] == 0 and m["free_differ_fp64_rate"] == pytest.approx(2 / 3)
    # QA grades: correct alone, wrong at b >= 3, both QA targets, every padding side.
    qa = batched[batched["kind"] == "qa"]
    assert (qa["grade_alone"] == "correct").all() and (qa["grade"] == "wrong").all()
    assert m["qa_grade_changed"] == len(qa) == 2 * 2 * 3
    # The same batches twice give the same bits: the control is 0.
    assert m["control_repeat_not_equal"] == 0
    assert m["prefill_vs_decode_not_equal_share"] == 0


def test_decode_read_off_the_free_runs_finds_the_same_flips():
    forced, _ = run()
    derived, m = run(decode_from_free=True)
    key = ["batch_size", "padding", "prompt_id"]
    rows = {name: t["logits"][(t["logits"]["measure"] == "decode") & (t["logits"]["run"] == "first")
                              & (t["logits"]["path"] == "default")].set_index(key).sort_index()
            for name, t in (("forced", forced), ("derived", derived))}
    assert rows["forced"].index.equals(rows["derived"].index)
    for column in ("flips", "first_flip", "min_margin"):
        assert (rows["forced"][column] == rows["derived"][column]).all(), column
    # Steps are compared up to and including the first divergence (step 1 at b >= 3), all 4 before.
    d = rows["derived"]
    assert (d.loc[d.index.get_level_values(0) >= 3, "steps"] == 2).all()
    assert (d.loc[d.index.get_level_values(0) == 2, "steps"] == 4).all()
    assert m["decode_flip_rate_b3"] == pytest.approx(1 / 2) and m["decode_flip_rate_b2"] == 0
    assert not (derived["timing"]["measure"] == "decode").any()  # no separate forced run


def test_derived_logits_are_the_teacher_forced_bits_in_the_same_batch():
    from nextlab.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, d_model=32)).eval()
    prompts = [[0, 7, 9], [0, 5, 3, 3], [0, 11]]
    alone = decode_batch(model, prompts[:1], "none", 12, None)[0].tokens
    free = decode_batch(model, prompts, "left", 12, None, keep_logits=[True, False, False])[0]
    forced = decode_batch(model, prompts, "left", 12, None, forced=[alone, None, None],
                          keep_logits=[True, False, False])[0]
    div = first_divergence(free.tokens, alone)
    n = len(alone) if div is None else div + 1
    assert torch.equal(free.logits[:n], forced.logits[:n])


def test_unique_completions_count_the_batch_sizes_the_requests_met():
    tables, m = run()
    comp = tables["completions"]
    reps = comp[comp["run"] == "repeat_requests"]
    assert len(reps) == 2 * 6 and m["repeat_requests"] == 12
    for prompt_id, rows in reps.groupby("prompt_id"):
        kinds = {b >= 3 for b in rows["batch_size"]}
        got = tables["unique"].set_index("prompt_id").loc[prompt_id, "unique"]
        assert got == len(kinds)
        assert (rows["differs"] == (rows["batch_size"] >= 3)).all()


def tables_steps_count(**kwargs) -> int:
    tables, _ = run(paddings=("left",), cache_modes=("decode",), **kwargs)
    rows = tables["logits"]
    return rows[(rows["run"] == "first") & (rows["path"] == "default") & (rows["batch_size"] > 1)]["steps"].sum()


def test_no_flip_no_difference():
    _, m = run(nudge_from=None, paddings=("left",), cache_modes=("decode",))
    assert m["decode_not_equal_share"] == 0 and m["decode_flip_rate"] == 0 and m["free_differ_rate"] == 0
    assert m["unique_completions_max"] == 1 and m["qa_grade_changed"] == 0
    assert m["free_first_divergence_mean"] is None
    assert "prefill_not_equal_share" not in m
    # Nothing flipped: the report gets the bound and the predicted rate (0: no logit moved).
    n_steps = int(tables_steps_count(nudge_from=None))
    assert m["decode_flip_rate_upper"] == pytest.approx(1 - 0.05 ** (1 / n_steps))
    assert m["decode_predicted_flip_rate"] == 0


def test_padding_sides_place_tokens_and_masks():
    idx, mask = pad_batch([[7, 8, 9], [5]], "left", pad_id=2)
    assert idx.tolist() == [[7, 8, 9], [2, 2, 5]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    idx, mask = pad_batch([[7, 8, 9], [5]], "right", pad_id=2)
    assert idx.tolist() == [[7, 8, 9], [5, 2, 2]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    idx, mask = pad_batch([[7, 8], [5, 6]], "none")
    assert mask is None
    with pytest.raises(ValueError, match="one length"):
        pad_batch([[7, 8], [5]], "none")
    with pytest.raises(ValueError, match="allowed"):
        pad_batch([[7]], "middle")


def test_prefill_logits_read_each_rows_real_positions():
    model = LookupModel(nudge_from=None)
    for side in ("left", "right"):
        out = prefill_logits(model, [[0, 5, 6], [0, 7]], side)
        assert torch.equal(out[0], model.table[torch.tensor([0, 5, 6])])
        assert torch.equal(out[1], model.table[torch.tensor([0, 7])])


def test_forced_rows_feed_their_tokens_and_stop():
    model = LookupModel(nudge_from=None)
    rows = decode_batch(model, [[0, 5], [0, 11]], "right", 6, EOS, forced=[[6, 8, 10], None],
                        keep_logits=[True, False])
    assert rows[0].tokens == [6, 8, 10] and rows[1].tokens == [EOS]
    assert torch.equal(rows[0].logits, model.table[torch.tensor([5, 6, 8])])


def test_compare_logits_judges_bits_not_values():
    a = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    b = torch.tensor([[-0.0, 1.0], [2.0, 1.0]])
    s = compare_logits(a, b)
    assert s.not_equal.tolist() == [True, False]  # -0.0 == 0.0, but the bits differ
    assert s.max_abs.tolist() == [0.0, 0.0] and s.flip.tolist() == [False, False]
    half = torch.tensor([[1.0, 1.0078125]], dtype=torch.bfloat16)
    s = compare_logits(half, torch.tensor([[1.0078125, 1.0]], dtype=torch.bfloat16))
    assert s.flip.tolist() == [True] and float(s.max_abs[0]) == 0.0078125 and float(s.margin[0]) == 0.0078125
    with pytest.raises(ValueError, match="shapes"):
        compare_logits(a, a[:1])


def test_completion_measures():
    assert truncate([4, 1, 5], eos_id=1) == [4, 1] and truncate([4, 5], eos_id=1) == [4, 5]
    assert first_divergence([4, 5, 1], [4, 5, 1, 9], eos_id=1) is None
    assert first_divergence([4, 5], [4, 5, 6]) == 2
    assert first_divergence([3], [4]) == 0
    assert unique_count([[4, 1, 7], [4, 1], [5, 1]], eos_id=1) == 2
    assert math.isinf(float(top2_margin(torch.zeros(1, 1))[0]))


def test_targets_come_from_the_most_common_lengths_and_refuse_too_many():
    pool = [P(f"q{i}", [0] * (3 if i < 5 else 4 + i)) for i in range(9)]
    chosen = choose_targets(pool, [], 4, 0, seed=1, where="qa.parquet")
    assert all(len(t.tokens) == 3 for t in chosen) and len(chosen) == 4
    with pytest.raises(Exception, match="qa_prompts=10.*only 9"):
        choose_targets(pool, [], 10, 0, seed=1, where="qa.parquet")
    assert bio_opening("Ada Quill", "{name} works as a {value}.", 2) == "Ada Quill works as"


def test_job_metrics_keep_their_keys_when_tables_are_empty():
    empty = {name: pd.DataFrame(columns=cols) for name, cols in {
        "logits": ["path", "measure", "batch_size", "padding", "run", "kind", "steps", "steps_not_equal",
                   "max_abs_diff", "mean_abs_diff", "flips"],
        "completions": ["path", "measure", "batch_size", "run", "kind", "differs", "first_divergence",
                        "differs_fp64", "grade_changed"],
        "timing": ["path", "measure", "batch_size", "run", "tokens", "seconds"],
        "unique": ["path", "prompt_id", "requests", "unique"]}.items()}
    m = job_metrics(empty["logits"], empty["completions"], empty["timing"], empty["unique"], [1, 2, 3, 4],
                    ["prefill", "decode"])
    assert m["decode_flip_rate_b4"] is None and m["qa_grade_changed"] == 0 and m["repeat_requests"] == 0
    _, full = run(paddings=("left",))  # the same batch sizes and cache modes
    assert set(m) == set(full)


@pytest.mark.parametrize("side", ["none", "left", "right"])
def test_decoding_past_the_context_restarts_from_the_last_half_alone_or_batched(side):
    from nextlab.model import GPT, GPTConfig
    from nextlab.nondeterminism.decode import Window, prefill_forced, window_for

    assert window_for(16, 3, 13) is None and window_for(16, 3, 14) == Window(every=8, keep=8)
    with pytest.raises(ValueError, match="at most 8 tokens"):
        window_for(16, 9, 30)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, d_model=16)).eval().double()
    w = Window(every=8, keep=8)
    prompts = [[0, 7, 9], [0, 5, 4]] if side == "none" else [[0, 7, 9], [0, 5]]
    free = decode_batch(model, prompts, side, 30, None, window=w)
    tokens = [r.tokens for r in free]
    dec = decode_batch(model, prompts, side, 30, None, forced=tokens, keep_logits=[True, True], window=w)
    pre = prefill_forced(model, prompts, tokens, side, window=w)
    for row in range(2):
        toks = tokens[row]
        # Step g's logits: its window (prompt + tokens, cut to the last 8 at each multiple of 8) alone.
        ref = []
        for g in range(30):
            start = (g // 8) * 8
            context = (list(prompts[row]) + toks[:start])[-8:] if start else list(prompts[row])
            ref.append(model(torch.tensor([context + toks[start:g]]))[0, -1])
        ref = torch.stack(ref)
        assert dec[row].tokens == toks and [int(t) for t in ref.argmax(-1)] == toks
        assert torch.allclose(pre[row], ref, atol=1e-9) and torch.allclose(dec[row].logits, ref, atol=1e-9)
