"""Reference policies (threshold on the model's own best guess, knowledge oracle) and a trained
scheme's share of its starting model's threshold policy, against hand-computed cases."""

import math

import numpy as np
import pandas as pd
import pytest

from nextlab.evaluate.summary import reference_share, scheme_metrics
from nextlab.qa import metrics as M


def test_threshold_policy_hand_computed():
    conf = np.array([0.95, 0.8, 0.6, 0.4, 0.75])
    right = np.array([True, False, True, True, False])
    # t = 0.5: answers the first three and the last; 1 - 1 + 1 + 0 - 1 = 0 -> mean 0
    assert M.threshold_policy(conf, right, 0.5).tolist() == [1.0, -1.0, 1.0, 0.0, -1.0]
    # t = 0.75: answers 0.95 and 0.8 (0.75 does not exceed 0.75): 1 - 3 -> [1, -3, 0, 0, 0]
    assert M.threshold_policy(conf, right, 0.75).tolist() == [1.0, -3.0, 0.0, 0.0, 0.0]
    # t = 0: every guess with a probability is answered and a wrong one costs nothing
    assert M.threshold_policy(conf, right, 0.0).tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert M.oracle_policy(right).tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]


def test_threshold_policy_is_best_for_a_calibrated_model():
    """With guesses right exactly as often as their probability says, no other cut-off scores more."""
    rng = np.random.default_rng(0)
    conf = rng.uniform(size=20000)
    right = rng.uniform(size=20000) < conf
    t = 0.75
    best = M.threshold_policy(conf, right, t).mean()
    for cut in (0.5, 0.65, 0.85, 0.95):
        rule = np.where(conf > cut, np.where(right, 1.0, -M.wrong_penalty(t)), 0.0).mean()
        assert rule < best
    assert best < M.oracle_policy(right).mean()


def _frame(grades, guess_conf, guess_seq, guess_correct, mentions=None):
    n = len(grades)
    mentions = mentions or [4] * n
    return pd.DataFrame({
        "question_id": np.arange(n), "grade": grades, "mentions": mentions, "seen": [m > 0 for m in mentions],
        "confidence": [0.9 if g != "abstain" else math.nan for g in grades], "cand_confidence": math.nan,
        "stated_confidence": math.nan, "guess_confidence": guess_conf, "guess_seq_confidence": guess_seq,
        "guess_correct": guess_correct,
    })


def test_reference_rows_in_scheme_metrics():
    sft = _frame(["correct", "wrong", "abstain", "abstain"], [0.9, 0.7, 0.6, 0.2], [0.8, 0.3, 0.55, 0.1],
                 [True, False, True, False])
    m = scheme_metrics([sft], None, (0.0, 0.5, 0.75), 10, 0, 0)
    # candidate-normalised, t = 0.5: answers 0.9 (right), 0.7 (wrong), 0.6 (right): (1 - 1 + 1) / 4
    assert m["ref_threshold_cand_t0.5"] == pytest.approx(0.25)
    # sequence probability, t = 0.5: answers 0.8 (right) and 0.55 (right): 2 / 4
    assert m["ref_threshold_t0.5"] == pytest.approx(0.5)
    # t = 0.75: cand answers 0.9 only; seq answers 0.8 only: 1 / 4 each
    assert m["ref_threshold_cand_t0.75"] == m["ref_threshold_t0.75"] == pytest.approx(0.25)
    assert m["ref_threshold_t0"] == pytest.approx(0.5)  # every guess answered, wrong costs 0
    assert m["ref_oracle"] == pytest.approx(0.5)
    # the model's own choices score 1 - 1 = 0 under t = 0.5
    assert m["score_t0.5"] == pytest.approx(0.0)


def test_share_of_threshold_policy_with_interval():
    rng = np.random.default_rng(1)
    n = 400
    conf = rng.uniform(size=n)
    right = rng.uniform(size=n) < conf
    start = _frame(["abstain"] * n, conf, conf, right)
    ref = M.threshold_policy(conf, right, 0.5).mean()
    # A trained seed that copies the threshold policy scores exactly the reference: share 1, gap 0.
    copy = np.where(conf > 0.5, np.where(right, "correct", "wrong"), "abstain").tolist()
    r = reference_share([_frame(copy, conf, conf, right)], start, 0.5, 300, 0)
    assert r["share_threshold"] == pytest.approx(1.0) and r["gap_threshold"] == pytest.approx(0.0)
    assert r["share_threshold_lo"] == pytest.approx(1.0) and r["share_threshold_hi"] == pytest.approx(1.0)
    # Abstaining everywhere scores 0: share 0; answering everything costs a lot.
    silent = reference_share([_frame(["abstain"] * n, conf, conf, right)], start, 0.5, 300, 0)
    assert silent["share_threshold_cand"] == 0.0
    assert silent["gap_threshold_cand"] == pytest.approx(-ref)
    assert silent["gap_threshold_cand_lo"] < -ref < silent["gap_threshold_cand_hi"]
    # Two seeds: the mean of the per-seed shares, with an interval around it.
    half = [g if i % 2 else "abstain" for i, g in enumerate(copy)]
    two = reference_share([_frame(copy, conf, conf, right), _frame(half, conf, conf, right)], start, 0.5, 300, 0)
    mine = np.array([1.0 if g == "correct" else -1.0 if g == "wrong" else 0.0 for g in half]).mean()
    assert two["share_threshold"] == pytest.approx((1.0 + mine / ref) / 2)
    assert two["share_threshold_lo"] < two["share_threshold"] < two["share_threshold_hi"]


def test_share_is_undefined_where_the_reference_scores_nothing():
    start = _frame(["abstain"] * 3, [0.2, 0.3, 0.4], [0.2, 0.3, 0.4], [True, True, True])
    r = reference_share([_frame(["correct"] * 3, [0.2] * 3, [0.2] * 3, [True] * 3)], start, 0.5, 50, 0)
    assert r["share_threshold"] is None  # nothing above 0.5: the reference scores 0
    assert r["gap_threshold"] == pytest.approx(1.0)


def test_kalai_bound_summary_hand_computed():
    from nextlab.evaluate.kalai import bound_summary, reliability_table

    # Facts seen once: confidences 0.3 and 0.3 (both wrong), 0.9 (right); seen 8x: 0.9 (right).
    rows = pd.DataFrame({"mentions": [1, 1, 1, 8], "confidence": [0.3, 0.3, 0.9, 0.9],
                         "correct": [False, False, True, True]})
    s = bound_summary(rows, singleton_rate=0.75, n_bins=10, n_boot=200, seed=0)
    # bins: 0.3 -> acc 0 (gap 0.3, 2 facts), 0.9 -> acc 1 (gap 0.1, 2 facts): ECE = (0.6 + 0.2) / 4
    assert s["ece"] == pytest.approx(0.2)
    assert s["forced_error_k1"] == pytest.approx(2 / 3) and s["forced_error_all"] == pytest.approx(0.5)
    assert s["forced_error_all_lo"] <= 0.5 <= s["forced_error_all_hi"]
    assert s["bound"] == pytest.approx(0.55) and s["bound_holds"] == 0.0  # 0.5 < 0.75 - 0.2
    table = reliability_table(rows, 10)
    assert table["facts"].tolist() == [2, 2] and table["accuracy"].tolist() == [0.0, 1.0]
