"""Metrics against hand-computed cases and against scikit-learn where it has the same metric."""

import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from nextlab.evaluate.bootstrap import interval, percentile_interval, weighted_mean
from nextlab.qa import metrics as M


def test_rates_hand_computed():
    correct = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    abstain = np.array([0, 0, 0, 0, 0, 1, 1, 1], bool)
    r = M.rates(correct, abstain)
    assert r == {"accuracy": 3 / 8, "hallucination": 2 / 8, "abstention": 3 / 8, "accuracy_when_attempted": 3 / 5}
    # nothing attempted: accuracy when attempted is undefined, not 0
    assert math.isnan(M.rates(np.zeros(3, bool), np.ones(3, bool))["accuracy_when_attempted"])


def test_score_under_targets():
    correct = np.array([1, 1, 0, 0], bool)
    abstain = np.array([0, 0, 0, 1], bool)
    assert M.score(correct, abstain, 0.0) == 0.5  # binary grading: wrong costs nothing
    assert M.score(correct, abstain, 0.5) == 0.25  # (1 + 1 - 1 + 0) / 4
    assert M.score(correct, abstain, 0.75) == -0.25  # (2 - 3) / 4
    assert M.score(correct, abstain, 0.9) == pytest.approx((2 - 9) / 4)
    with pytest.raises(ValueError):
        M.wrong_penalty(1.0)


def test_score_threshold_is_where_answering_breaks_even():
    # An answer right with probability p has expected score p - (1 - p) t/(1-t): zero at p = t.
    for t in (0.5, 0.75, 0.9):
        p = t
        assert p - (1 - p) * M.wrong_penalty(t) == pytest.approx(0.0)


def test_ece_and_mce_hand_computed():
    conf = np.array([0.95, 0.95, 0.95, 0.95, 0.15, 0.15])
    y = np.array([1, 1, 1, 0, 0, 1])
    # bin (0.9, 1]: acc .75 conf .95 -> gap .2, weight 4/6; bin (0.1, 0.2]: acc .5 conf .15 -> .35, 2/6
    assert M.ece(conf, y) == pytest.approx(4 / 6 * 0.2 + 2 / 6 * 0.35)
    assert M.mce(conf, y) == pytest.approx(0.35)
    # equal mass, 2 bins of 3: sorted confs [.15 .15 .95 | .95 .95 .95], labels [0 1 1 | 1 1 0]
    expected = 0.5 * abs(2 / 3 - (0.15 + 0.15 + 0.95) / 3) + 0.5 * abs(2 / 3 - 0.95)
    assert M.ece(conf, y, n_bins=2, strategy="mass") == pytest.approx(expected)
    # perfectly calibrated bins give zero
    assert M.ece(np.array([0.5, 0.5, 1.0]), np.array([1, 0, 1])) == pytest.approx(0.0)
    assert math.isnan(M.ece(np.array([]), np.array([])))


def test_reliability_bins_match_sklearn_calibration_curve():
    rng = np.random.default_rng(0)
    conf = rng.uniform(size=500)
    conf[:20] = 0.3  # values exactly on bin edges go to the lower bin, as in sklearn
    y = rng.uniform(size=500) < conf
    counts, mean_conf, acc = M.reliability_bins(conf, y, 10, "width")
    prob_true, prob_pred = calibration_curve(y, conf, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(acc, prob_true)
    np.testing.assert_allclose(mean_conf, prob_pred)
    assert counts.sum() == 500
    # equal-mass bins hold the same number of questions
    counts_m, _, _ = M.reliability_bins(conf, y, 10, "mass")
    assert counts_m.tolist() == [50] * 10


def test_brier_nll_auroc_match_sklearn():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.01, 0.99, size=300)
    conf[::7] = 0.5  # ties
    y = (rng.uniform(size=300) < conf).astype(int)
    assert M.brier(conf, y) == pytest.approx(brier_score_loss(y, conf))
    assert M.nll(conf, y) == pytest.approx(log_loss(y, conf))
    assert M.auroc(conf, y) == pytest.approx(roc_auc_score(y, conf))


def test_auroc_hand_computed_and_undefined():
    assert M.auroc(np.array([0.9, 0.8, 0.3, 0.8]), np.array([1, 1, 0, 0])) == 0.875
    assert M.auroc(np.array([0.1, 0.9]), np.array([1, 0])) == 0.0
    assert math.isnan(M.auroc(np.array([0.1, 0.9]), np.array([1, 1])))


def test_nll_clips_certain_mistakes():
    assert M.nll(np.array([1.0]), np.array([0])) == pytest.approx(-math.log(M.NLL_EPS))


def test_accuracy_coverage_curve_and_area():
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    y = np.array([1, 1, 0, 1])
    cov, acc = M.accuracy_coverage(conf, y)
    assert cov.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert acc.tolist() == pytest.approx([1.0, 1.0, 2 / 3, 0.75])
    assert M.accuracy_coverage_area(conf, y) == pytest.approx((1 + 1 + 2 / 3 + 0.75) / 4)
    # uninformative confidence (all tied): every prefix has the mean accuracy
    _, flat = M.accuracy_coverage(np.full(4, 0.5), y)
    assert flat.tolist() == pytest.approx([0.75] * 4)
    # row order never matters
    perm = np.array([2, 0, 3, 1])
    assert M.accuracy_coverage_area(conf[perm], y[perm]) == M.accuracy_coverage_area(conf, y)


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 3, size=4000)
    conf = 1 / (1 + np.exp(-z))  # stated
    y = rng.uniform(size=4000) < 1 / (1 + np.exp(-z / 2.0))  # true: the model is overconfident by T=2
    t = M.fit_temperature(conf, y)
    assert 1.8 < t < 2.2
    assert M.ece(M.apply_temperature(conf, t), y) < M.ece(conf, y) / 2
    assert M.apply_temperature(np.array([0.5]), 3.0)[0] == pytest.approx(0.5)
    assert M.fit_temperature(np.array([0.9, 0.8]), np.array([1, 1])) == 1.0  # one outcome: nothing to fit


def test_behavioural_audit():
    guess_conf = np.array([0.1, 0.3, 0.6, 0.8, 0.95])
    answered = np.array([False, True, True, True, True])
    guess_correct = np.array([False, False, True, False, True])
    a = M.audit(guess_conf, answered, guess_correct, 0.5)
    assert a["answer_rate_below"] == 0.5
    assert a["answer_rate_above"] == 1.0
    assert a["share_above"] == 0.6
    # the threshold rule answers the 3 above 0.5: 2 right, 1 wrong (cost 1) -> (2 - 1) / 5
    assert a["threshold_score"] == pytest.approx(0.2)
    assert math.isnan(M.audit(guess_conf, answered, guess_correct, 0.0)["answer_rate_below"])


def test_bootstrap_interval_over_questions():
    rng = np.random.default_rng(3)
    y = (rng.uniform(size=(1, 400)) < 0.5).astype(float)
    stat = lambda C: weighted_mean(C, np.ones_like(y), y)  # noqa: E731
    point, lo, hi = interval(stat, 1, 400, 1000, seed=0)
    assert point == y.mean()
    assert lo < point < hi
    assert 0.07 < hi - lo < 0.13  # 2 x 1.96 x sqrt(.25 / 400) = 0.098
    assert interval(stat, 1, 400, 200, seed=5) == interval(stat, 1, 400, 200, seed=5)  # seeded


def test_bootstrap_across_seeds_widens_with_seed_spread():
    rng = np.random.default_rng(4)
    base = (rng.uniform(size=(1, 300)) < 0.5).astype(float)
    same = np.repeat(base, 3, axis=0)
    spread = np.stack([base[0], np.ones(300), np.zeros(300)])  # seeds disagree wildly
    ones = np.ones((3, 300))
    _, lo1, hi1 = interval(lambda C: weighted_mean(C, ones, same), 3, 300, 500, seed=0)
    point, lo2, hi2 = interval(lambda C: weighted_mean(C, ones, spread), 3, 300, 500, seed=0)
    assert point == pytest.approx(spread.mean())
    assert hi2 - lo2 > 3 * (hi1 - lo1)


def test_count_matrix_statistics_equal_the_plain_metrics():
    """A replicate's counts reproduce the metric computed on the resampled list of questions."""
    from nextlab.evaluate.summary import _ece_stat, auroc_stat

    rng = np.random.default_rng(5)
    n = 60
    conf = np.round(rng.uniform(size=(1, n)), 2)  # rounding makes ties
    y = (rng.uniform(size=(1, n)) < conf).astype(float)
    w = (rng.uniform(size=(1, n)) < 0.8).astype(float)  # attempted
    idx = rng.integers(0, n, size=n)
    C = np.bincount(idx, minlength=n)[None, :].astype(float)
    keep = idx[w[0, idx] > 0]
    c, yy = conf[0, keep], y[0, keep]
    assert _ece_stat(w, conf, y, 10)(C)[0, 0] == pytest.approx(M.ece(c, yy, 10))
    assert _ece_stat(w, conf, y, 10, worst=True)(C)[0, 0] == pytest.approx(M.mce(c, yy, 10))
    assert auroc_stat(w, conf, y)(C)[0, 0] == pytest.approx(M.auroc(c, yy))
    assert weighted_mean(C, w, (conf - y) ** 2)[0, 0] == pytest.approx(M.brier(c, yy))


def test_percentile_interval_ignores_undefined_replicates():
    assert percentile_interval(np.array([np.nan, 1.0, 1.0])) == (1.0, 1.0)
    assert all(math.isnan(v) for v in percentile_interval(np.array([np.nan])))
