"""The equivalence test, the verdict rule and the seeds planner (benchmark.analysis.verdicts),
cross-checked against independent implementations: statsmodels' ttost_paired and power
functions, pingouin's tost, and a simulation of the planned designs."""

import math

import numpy as np
import pandas as pd
import pingouin
import pytest
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from benchmark.analysis import verdicts
from benchmark.analysis.stats import REL_TOL, _snap, censored_statistics, compare, paired_statistics, wilcoxon_test
from benchmark.analysis.verdicts import (
    DIFFERENT,
    EQUIVALENT,
    INCONCLUSIVE,
    NEGLIGIBLE,
    Margin,
    MarginError,
    margins,
    plan,
    sd_upper_bound,
    tost,
    tost_power,
    ttest_power,
    verdict,
)
from benchmark.spec.config import MarginsConfig

ACCURACY = Margin("test_accuracy", 0.5)  # ±0.5 points = ±0.005 of a fraction


def generated_pairs(seed: int, n: int, shift: float, spread: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    b = 0.9 + rng.normal(0, 0.004, n)
    return b + shift + rng.normal(0, spread, n), b


# ------------------------------------------------------------------ margins


def test_defaults_units_and_sources():
    found = margins()
    assert {k: m.value for k, m in found.items()} == {
        "test_accuracy": 0.5,
        "test_macro_f1": 0.5,
        "images_per_sec_avg": 5.0,
        "epochs_to_val_acc": 10.0,
        "seconds_to_val_acc": 10.0,
    }
    assert set(verdicts.MARGIN_UNITS) == set(found) == {f for f in MarginsConfig.__dataclass_fields__}
    assert found["test_accuracy"].absolute(0.9) == pytest.approx(0.005)  # points of a fraction
    assert found["images_per_sec_avg"].absolute(400.0) == pytest.approx(20.0)  # 5% of the second arm's mean
    assert found["seconds_to_val_acc"].label() == "±10% of the second arm's mean"
    layered = margins({"test_accuracy": 0.3}, ["test_macro_f1=0.2", "test_accuracy=0.4"])
    assert (layered["test_accuracy"].value, layered["test_accuracy"].source) == (0.4, "--margin")
    assert (layered["test_macro_f1"].value, layered["images_per_sec_avg"].source) == (0.2, "default")
    assert margins({"test_accuracy": 0.3})["test_accuracy"].source == "the sweep's config"
    assert verdicts.margin_key("epochs_to_val_acc_0.9") == "epochs_to_val_acc"
    assert verdicts.margin_key("seconds_to_val_acc_0.55") == "seconds_to_val_acc"


@pytest.mark.parametrize(
    "override, message",
    [
        ("test_accuracy=0", "must be a number > 0"),
        ("test_accuracy=-0.5", "must be a number > 0"),
        ("test_accuracy=nan", "must be a number > 0"),
        ("test_accuracy=inf", "must be a number > 0"),
        ("test_accuracy=abc", "is not a number"),
        ("nosuch=1", "no compared metric 'nosuch'"),
        ("test_accuracy", "write METRIC=VALUE"),
        ("=0.3", "write METRIC=VALUE"),
    ],
)
def test_a_bad_margin_is_one_line(override, message):
    with pytest.raises(MarginError, match=message) as err:
        margins(None, [override])
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ TOST against statsmodels and pingouin


@pytest.mark.parametrize("n", [2, 3, 5, 10, 50])
@pytest.mark.parametrize("shift", [0.0, 0.002, 0.004, 0.01])
def test_tost_agrees_with_statsmodels_and_pingouin(n, shift):
    a, b = generated_pairs(n * 7 + int(shift * 1e4), n, shift, 0.003)
    mine = tost(a - b, 0.005)
    theirs = ttost_paired(a, b, -0.005, 0.005)[0]
    assert mine == pytest.approx(theirs, abs=1e-12)
    assert mine == pytest.approx(pingouin.tost(a, b, bound=0.005, paired=True)["pval"].iloc[0], abs=1e-12)
    # p < α exactly when the 90% t-interval lies inside the margin
    low, high = verdicts.t_interval(a - b, 0.90)
    assert (mine < verdicts.ALPHA) == verdicts.inside(low, high, 0.005)
    row = paired_statistics(a, b, ACCURACY)
    assert row["tost_p"] == pytest.approx(theirs, abs=1e-12)
    assert (row["t90_low"], row["t90_high"]) == pytest.approx((low, high))


def test_tost_degenerate_cases():
    # one pair: nothing can be shown (statsmodels gives nan: no standard deviation)
    one = paired_statistics(np.array([0.9]), np.array([0.9]), ACCURACY)
    assert np.isnan(ttost_paired(np.array([0.9]), np.array([0.9]), -0.005, 0.005)[0])
    assert (one["tost_p"], one["boot_equivalent"], one["verdict"] if "verdict" in one else None) == (1.0, False, None)
    assert math.isnan(one["seeds_for_equivalence"]) and "tost_p = 1.0" in one["note"]
    # all differences zero: statsmodels' limit (t = ±inf) is p = 0, equivalence shown
    same = np.array([0.9, 0.91, 0.92])
    zero = paired_statistics(same, same.copy(), ACCURACY)
    with np.errstate(divide="ignore", invalid="ignore"):
        assert ttost_paired(same, same.copy(), -0.005, 0.005)[0] == 0.0
    assert zero["tost_p"] == 0.0 and zero["boot_equivalent"] and zero["seeds_for_equivalence"] == 2
    assert "tost_p = 0.0 (its limit)" in zero["note"]
    # all differences equal: inside the margin p → 0, outside p → 1
    inside = paired_statistics(same + 0.001, same, ACCURACY)
    outside = paired_statistics(same + 0.01, same, ACCURACY)
    assert (inside["tost_p"], outside["tost_p"]) == (0.0, 1.0)
    assert (inside["t95_low"], inside["t95_high"]) == pytest.approx((0.001, 0.001))
    # float noise of the values is no spread (the analysis' tolerance, docs/analysis.md §7)
    noisy = paired_statistics(same + 0.001 + np.array([0, 1e-12, -1e-12]), same, ACCURACY)
    assert noisy["tost_p"] == 0.0


def test_censored_pairs_cannot_be_equivalent():
    reached = np.array([10.0, 11, 12, 13, 14, 15])
    a, b = reached.copy(), reached + 0.1
    full = censored_statistics(a, b, Margin("epochs_to_val_acc", 10.0))
    assert full["tost_p"] < 0.05 and full["n_reached"] == 6
    a[0] = np.inf  # one pair where only the second arm reached it: a difference beyond any margin
    one_sided = censored_statistics(a, b, Margin("epochs_to_val_acc", 10.0))
    assert one_sided["tost_p"] == 1.0 and not one_sided["boot_equivalent"]
    assert (one_sided["n_pairs"], one_sided["n_reached"]) == (6, 5)
    assert math.isnan(one_sided["seeds_for_equivalence"]) and "outside any margin" in one_sided["note"]
    # TOST over the reached pairs equals statsmodels on those pairs where no pair is one-sided
    a[0], b[0] = np.inf, np.inf  # neither reached it: left out
    neither = censored_statistics(a, b, Margin("epochs_to_val_acc", 10.0))
    margin = 0.1 * b[1:].mean()
    assert neither["tost_p"] == pytest.approx(ttost_paired(a[1:], b[1:], -margin, margin)[0])
    # fewer than two reached pairs: the note names the convention that set p and d
    a, b = np.array([np.inf, np.inf, 5.0]), np.array([np.inf, 4.0, 6.0])
    assert "one pair: no test possible" in censored_statistics(a, b, Margin("epochs_to_val_acc", 10.0))["note"]
    a, b = np.array([np.inf, np.inf]), np.array([np.inf, 4.0])
    assert "no pair where both reached it" in censored_statistics(a, b, Margin("epochs_to_val_acc", 10.0))["note"]


# ------------------------------------------------------------------ the verdict


def test_the_verdict_rule():
    assert verdict(difference_shown=True, equivalence_shown=False) == DIFFERENT
    assert verdict(difference_shown=False, equivalence_shown=True) == EQUIVALENT
    assert verdict(difference_shown=True, equivalence_shown=True) == NEGLIGIBLE
    assert verdict(difference_shown=False, equivalence_shown=False) == INCONCLUSIVE


def two_arm_results(a: np.ndarray, b: np.ndarray) -> pd.DataFrame:
    """results.csv rows of two arms (pytorch − keras) paired by seed."""
    rows = []
    for framework, values in (("pytorch", a), ("keras", b)):
        for seed, value in enumerate(values):
            rows.append(
                {
                    "framework": framework,
                    "dataset": "cifar10",
                    "model": "resnet50",
                    "precision": "fp32",
                    "protocol": "native",
                    "seed": seed,
                    "variant": "",
                    "state": "completed",
                    "run_dir": f"{framework}_{seed}",
                    "execution_mode": "eager",
                    "test_accuracy": value,
                    "test_macro_f1": value,
                    "images_per_sec_avg": 1000.0 + seed,
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "seed, shift, spread, n, expected",
    [
        (11, 0.02, 0.003, 50, {DIFFERENT}),  # 2 points: far outside ±0.5
        (11, 0.002, 0.003, 50, {NEGLIGIBLE, EQUIVALENT}),  # 0.2 points, 50 seeds: inside ±0.5
        (1, 0.0, 0.008, 3, {INCONCLUSIVE}),  # 3 seeds of this spread show nothing (differences −1.0, 0.7, 0.4 points)
    ],
)
def test_verdicts_of_generated_sweeps(seed, shift, spread, n, expected):
    a, b = generated_pairs(seed, n, shift, spread)
    table, _ = compare(two_arm_results(a, b))
    row = table[table["metric"] == "test_accuracy"].iloc[0]
    assert row["verdict"] in expected
    difference = row["holm_ttest_p"] < 0.05
    assert (row["t95_low"] > 0 or row["t95_high"] < 0) == difference  # one comparison: Holm = raw
    assert row["verdict"] == verdict(difference, row["tost_p"] < 0.05)


# ------------------------------------------------------------------ the planner


def test_sd_upper_bound_is_the_chi_square_bound():
    from scipy import stats

    for n in (2, 3, 5, 20):
        ucb = sd_upper_bound(1.0, n)
        # P(S ≤ s) for S the sample SD with σ = ucb equals 1 − 0.8: s is the bound's 20% quantile
        assert stats.chi2.cdf((n - 1) * 1.0 / ucb**2, n - 1) == pytest.approx(0.2)
    assert sd_upper_bound(1.0, 3) > sd_upper_bound(1.0, 30) > 1.0


@pytest.mark.parametrize("effect", [0.2, 0.5, 0.8, 1.2, 2.5])
def test_planner_agrees_with_statsmodels_power(effect):
    power = TTestPower()
    sd = 0.004
    margin = effect * sd
    for n in (2, 3, 5, 8, 13, 40):
        theirs = power.power(effect_size=effect, nobs=n, alpha=0.05, alternative="two-sided")
        # scipy's noncentral t is nan far in its lower tail (both use it): there the power is 1
        assert ttest_power(n, margin, sd) == pytest.approx(theirs if np.isfinite(theirs) else 1.0, abs=1e-9)
        one_sided = power.power(effect_size=effect, nobs=n, alpha=0.05, alternative="larger")
        assert tost_power(n, margin, sd) == pytest.approx(max(0.0, 2 * one_sided - 1), abs=1e-9)
    # the planned numbers of pairs: statsmodels' solve_power, rounded up
    rng = np.random.default_rng(int(effect * 10))
    diffs = rng.normal(0, sd, 4)
    planned = plan(diffs, margin)
    ucb_effect = margin / planned["sd_ucb"]
    expected_difference = max(
        2, math.ceil(power.solve_power(effect_size=ucb_effect, alpha=0.05, power=0.8, alternative="two-sided"))
    )
    assert abs(planned["seeds_for_difference"] - expected_difference) <= 1  # solve_power's root finder tolerance
    assert ttest_power(planned["seeds_for_difference"], margin, planned["sd_ucb"]) >= 0.8
    assert ttest_power(planned["seeds_for_difference"] - 1, margin, planned["sd_ucb"]) < 0.8 or (
        planned["seeds_for_difference"] == 2
    )
    assert tost_power(planned["seeds_for_equivalence"], margin, planned["sd_ucb"]) >= 0.8


def test_planned_equivalence_pairs_reach_the_power_in_simulation():
    """At the planned n, the TOST (statsmodels') shows equivalence in ≥ 80% of simulated
    sweeps with true Δ = 0 and σ = the bound the plan used: the approximation is a lower bound."""
    sd, margin = 0.004, 0.005
    n = verdicts.pairs_needed(lambda k: tost_power(k, margin, sd))
    rng = np.random.default_rng(5)
    trials = 2000
    shown = sum(ttost_paired(d := rng.normal(0, sd, n), np.zeros(n), -margin, margin)[0] < 0.05 for _ in range(trials))
    assert shown / trials >= 0.8 - 3 * math.sqrt(0.16 / trials)
    assert d.shape == (n,)


def test_planner_degenerate_cases():
    assert all(math.isnan(v) for v in plan(np.array([0.001]), 0.005).values())
    assert plan(np.zeros(3), 0.005, spread=False) == {
        "sd_ucb": 0.0,
        "seeds_for_equivalence": 2,
        "seeds_for_difference": 2,
    }
    huge = plan(np.array([-1.0, 1.0, 0.5]), 1e-6)
    assert huge["seeds_for_equivalence"] == math.inf and huge["seeds_for_difference"] == math.inf


# ------------------------------------------------------------------ the tolerance rule


def test_float_noise_within_the_tolerance_is_zero_and_ties():
    scale = 0.9
    tol = REL_TOL * scale
    # within tol of zero: zero (a rounding grid would keep 0.75 tol as one step)
    assert _snap(np.array([0.75 * tol, -0.75 * tol, 0.01]), scale).tolist() == [0.0, 0.0, 0.01]
    # magnitudes within tol of each other tie, even across a rounding grid's cell border
    snapped = _snap(np.array([0.01 + 0.49 * tol, 0.01 + 0.8 * tol, -0.02]), scale)
    assert snapped[0] == snapped[1] and snapped[2] == -0.02
    # a chain ties as a whole, signs are kept
    chained = _snap(np.array([0.01, -(0.01 + 0.9 * tol), 0.01 + 1.8 * tol]), scale)
    assert np.abs(chained).tolist() == [0.01] * 3 and chained[1] < 0
    # the example: 5 pairs, one difference 0.75e-9 × magnitude: four non-zero, minimum p 2/2^4
    values = np.array([0.001, 0.002, 0.003, 0.004, 0.75 * tol])
    row = paired_statistics(np.full(5, scale) + values, np.full(5, scale), ACCURACY)
    assert row["wilcoxon_min_p"] == 0.125
    assert row["wilcoxon_p"] == wilcoxon_test(np.array([0.001, 0.002, 0.003, 0.004, 0.0]))[0]
