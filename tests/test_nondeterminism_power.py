"""The power calculation, the bound a run without flips reports, and the flips the measured drift
predicts, against cases whose answer is known exactly (binomial arithmetic, hand-built steps)."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binom

from nextlab.nondeterminism.power import (
    completions_for_power,
    detection_power,
    lower_bound,
    predicted_flips,
    upper_bound,
)


def test_power_of_the_design_is_the_binomial_chance_of_at_least_one_change():
    # 1% changed, 299 completions: P(X >= 1) = 1 - 0.99^299 = 0.9505; 298 is one short of 95%.
    assert completions_for_power(0.01, 0.95) == 299
    assert detection_power(0.01, 299) == pytest.approx(1 - binom.pmf(0, 299, 0.01), rel=1e-12)
    assert detection_power(0.01, 298) < 0.95 <= detection_power(0.01, 299)
    assert completions_for_power(0.05, 0.8) == 32  # 0.95^31 = 0.204, 0.95^32 = 0.194
    assert detection_power(0.3, 0) == 0.0


@pytest.mark.parametrize("k,n", [(0, 72), (0, 299), (1, 20), (3, 100), (10, 40), (0, 1)])
def test_the_upper_bound_is_the_exact_one_sided_binomial_bound(k, n):
    u = upper_bound(k, n)
    # Clopper-Pearson: the rate at which seeing <= k of n has probability exactly 5%.
    assert binom.cdf(k, n, u) == pytest.approx(0.05, abs=1e-9)
    lo = lower_bound(k, n)
    assert lo == 0.0 if k == 0 else binom.sf(k - 1, n, lo) == pytest.approx(0.05, abs=1e-9)


def test_nothing_seen_in_72_completions_still_allows_four_percent():
    # The case: 0 of 72 changed is not "not shown" but "below 4.1% (95% bound)".
    assert upper_bound(0, 72) == pytest.approx(1 - 0.05 ** (1 / 72))
    assert 0.040 < upper_bound(0, 72) < 0.041
    assert upper_bound(5, 5) == 1.0


def test_predicted_flips_on_hand_built_steps():
    # margin, drift per step: (tie closed), (drift too small), (within 2x: possible only),
    # (exact tie, logits unmoved: cannot flip), (large margin).
    margin = [1e-4, 0.5, 0.015, 0.0, 3.0]
    drift = [2e-4, 0.01, 0.01, 0.0, 0.1]
    p = predicted_flips(margin, drift)
    assert (p.steps, p.predicted, p.possible) == (5, 1, 2)
    assert p.predicted_rate == pytest.approx(0.2) and p.possible_rate == pytest.approx(0.4)
    assert predicted_flips([], []).predicted_rate is None
    with pytest.raises(ValueError):
        predicted_flips([1.0], [1.0, 2.0])


def test_bad_arguments_are_refused():
    for call in (lambda: upper_bound(3, 2), lambda: upper_bound(0, 0), lambda: completions_for_power(0, 0.9),
                 lambda: detection_power(1.5, 10)):
        with pytest.raises(ValueError):
            call()
    assert math.isclose(upper_bound(0, 1), 0.95)


def _completions(default: tuple[int, int], control: tuple[int, int] | None, dtype="bfloat16", b=2):
    import pandas as pd

    rows = []
    for path, (k, n) in (("default", default), ("invariant", control)) if control else (("default", default),):
        rows += [{"dtype": dtype, "batch_size": b, "run": "first", "path": path, "differs": i < k} for i in range(n)]
    return pd.DataFrame(rows)


def _steps(margins, drifts, flips):
    import pandas as pd

    return pd.DataFrame({"measure": "decode", "batch_size": 2, "margin": margins, "max_abs_diff": drifts,
                         "flip": flips})


def test_verdict_needs_separated_non_degenerate_intervals():
    from nextlab.report.figures.nondeterminism import verdict

    steps = _steps([0.01, 1.0, 1.0, 1.0], [0.02, 0.01, 0.0, 0.0], [True, False, False, False])
    said, findings = verdict(_completions((30, 300), (0, 300)), steps)
    assert said.startswith("Supported: bfloat16, batch 2: 10.0%")
    assert "predicted 25.000% of 4 steps" in said and "25.000% did" in said
    # A rate above 0 whose interval overlaps the control's is not resolved.
    said, _ = verdict(_completions((2, 39), (0, 39)), steps)
    assert said.startswith("Not resolved") and "overlaps" in said
    # No batch size separates alone, but pooled over batch sizes the control's interval is narrower.
    import pandas as pd

    pooled = pd.concat([_completions((3, 40), (0, 40), b=b) for b in (2, 4, 16, 64)], ignore_index=True)
    said, findings = verdict(pooled, steps)
    assert said.startswith("Supported: bfloat16, batch > 1: 7.5%")
    assert any(f.key == "nondeterminism.bfloat16.differ_ball" for f in findings)
    said, _ = verdict(_completions((2, 39), (0, 39)), steps)
    assert said.startswith("Not resolved") and "overlaps" in said
    # Without a control nothing is separated.
    said, _ = verdict(_completions((30, 300), None), steps)
    assert said.startswith("Not resolved") and "no batch-invariant control" in said
    # Nothing changed: the exact bound, never a bare "not shown".
    said, _ = verdict(_completions((0, 299), (0, 100)), _steps([1.0], [0.0], [False]))
    assert said.startswith("Not shown: 0 of 299") and "below 1.00%" in said and "predicted 0.000%" in said


def test_the_report_states_the_power_of_the_design_it_ran():
    import pandas as pd

    from nextlab.report.figures.nondeterminism import power_note

    first = pd.concat([_completions((0, 299), None, b=b) for b in (2, 64)], ignore_index=True)
    note = power_note(first)
    assert "299 give 95%" in note and "n = 299-299 (power 95%)" in note and "pooled over dtypes n = 299" in note
