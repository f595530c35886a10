"""detectors.ab: SRM, fixed-horizon tests, sample size, guardrails (agreement with scipy, validation, edge cases)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from detectors.ab import (
    evaluate_guardrail,
    required_sample_size,
    sample_ratio_mismatch,
    two_proportion_z_test,
    welch_t_test,
)  # fmt: skip


# -- sample-ratio mismatch ---------------------------------------------------------------------------------------
def test_srm_matches_scipy_chisquare():
    counts, shares = {"a": 5_210, "b": 4_790, "c": 10_100}, {"a": 1, "b": 1, "c": 2}
    r = sample_ratio_mismatch(counts, shares)
    ref = stats.chisquare([5_210, 4_790, 10_100], [5_025, 5_025, 10_050])
    assert r.statistic == pytest.approx(ref.statistic) and r.p_value == pytest.approx(ref.pvalue)
    assert r.dof == 2 and r.n == 20_100 and r.intended_share == pytest.approx((0.25, 0.25, 0.5))


def test_srm_detected_on_a_broken_split_not_on_a_correct_one():
    rng = np.random.default_rng(11)
    false_alarms = 0
    for _ in range(200):  # a correct 50/50 split, 20,000 users each time
        a = int(rng.binomial(20_000, 0.5))
        false_alarms += sample_ratio_mismatch({"a": a, "b": 20_000 - a}, {"a": 1, "b": 1}).mismatch
    assert false_alarms <= 2  # alpha = 0.001: expected 0.2
    # A broken split: the treatment loses 3% of its users (e.g. crashes before logging), 100,000 users.
    detected = 0
    for _ in range(50):
        a = int(rng.binomial(100_000, 0.5))
        b = int(rng.binomial(100_000 - a, 0.97))
        r = sample_ratio_mismatch({"a": a, "b": b}, {"a": 1, "b": 1})
        detected += r.mismatch and r.reason == "chi_square"
    assert detected >= 45


def test_srm_unexpected_variants_and_small_samples():
    r = sample_ratio_mismatch({"a": 500, "b": 500, "c": 3}, {"a": 1, "b": 1})
    assert r.mismatch and r.reason == "unexpected_variants" and r.unexpected_variants == ("c",) and r.unexpected_n == 3
    r = sample_ratio_mismatch({"a": 3, "b": 2}, {"a": 1, "b": 1})
    assert not r.mismatch and r.reason == "too_few" and r.p_value == 1.0
    r = sample_ratio_mismatch({}, {"a": 1, "b": 1})
    assert r.reason == "no_data" and r.observed == (0, 0)
    assert r.to_dict()["variants"]["a"]["observed_share"] is None


@pytest.mark.parametrize("kwargs, match", [
    ({"counts": {"a": 1}, "intended": {"a": 1}}, "at least two"),
    ({"counts": {"a": 1}, "intended": {"a": 1, "b": 0}}, r"intended\['b'\]"),
    ({"counts": {"a": -1}, "intended": {"a": 1, "b": 1}}, r"counts\['a'\]"),
    ({"counts": {"a": 1.5}, "intended": {"a": 1, "b": 1}}, r"counts\['a'\]"),
    ({"counts": {"a": 1}, "intended": {"a": 1, "b": 1}, "alpha": 1.0}, "alpha"),
])
def test_srm_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_ratio_mismatch(**kwargs)


# -- fixed-horizon tests -----------------------------------------------------------------------------------------
def test_two_proportion_z_test_matches_the_textbook():
    r = two_proportion_z_test(480, 4_000, 560, 4_100, planned_n=4_000)
    p = (480 + 560) / 8_100
    z = (560 / 4_100 - 480 / 4_000) / math.sqrt(p * (1 - p) * (1 / 4_000 + 1 / 4_100))
    assert r.statistic == pytest.approx(z) and r.p_value == pytest.approx(2 * stats.norm.sf(abs(z)))
    se = math.sqrt(0.12 * 0.88 / 4_000 + (560 / 4_100) * (1 - 560 / 4_100) / 4_100)
    assert r.ci_high - r.lift == pytest.approx(1.959964 * se, rel=1e-5)
    assert r.valid_now and r.test == "z" and r.dof is None


def test_fixed_horizon_is_not_significant_before_the_planned_size():
    early = two_proportion_z_test(1_000, 10_000, 1_200, 10_000, planned_n=20_000)
    assert early.p_value < 1e-4 and not early.valid_now and not early.significant
    assert two_proportion_z_test(1_000, 10_000, 1_200, 10_000, planned_n=10_000).significant


def test_welch_matches_scipy_ttest_ind():
    rng = np.random.default_rng(3)
    a, b = rng.normal(1.0, 2.0, 300), rng.normal(1.4, 3.0, 500)
    r = welch_t_test(a.mean(), a.std(ddof=1), a.size, b.mean(), b.std(ddof=1), b.size, planned_n=300)
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert r.statistic == pytest.approx(ref.statistic) and r.p_value == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert (r.ci_low, r.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_degenerate_inputs_give_p_one():
    assert two_proportion_z_test(0, 100, 0, 100, planned_n=10).p_value == 1.0
    assert math.isnan(two_proportion_z_test(0, 0, 5, 10, planned_n=10).mean_a)
    assert welch_t_test(1.0, 0.0, 50, 1.0, 0.0, 50, planned_n=10).p_value == 1.0
    assert welch_t_test(1.0, 1.0, 1, 2.0, 1.0, 50, planned_n=10).p_value == 1.0


@pytest.mark.parametrize("call, match", [
    (lambda: two_proportion_z_test(11, 10, 1, 10, planned_n=5), "at most"),
    (lambda: two_proportion_z_test(1, 10, 1, 10, planned_n=1), "planned_n"),
    (lambda: two_proportion_z_test(1, 10, 1, 10, planned_n=5, alpha=0), "alpha"),
    (lambda: welch_t_test(1.0, -1.0, 10, 1.0, 1.0, 10, planned_n=5), "sd_a"),
    (lambda: welch_t_test(math.nan, 1.0, 10, 1.0, 1.0, 10, planned_n=5), "mean_a"),
])
def test_fixed_horizon_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- sample size -------------------------------------------------------------------------------------------------
def test_required_sample_size_gives_the_planned_power():
    n = required_sample_size(p_baseline=0.10, mde=0.02, power=0.8)
    # Power of the z-test at n per variant, by the same normal approximation: 0.8 at n, less at n - 1.
    def power(m):
        p1, p2 = 0.10, 0.12
        pbar = (p1 + p2) / 2
        se0 = math.sqrt(2 * pbar * (1 - pbar) / m)
        se1 = math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / m)
        return stats.norm.sf((1.959964 * se0 - 0.02) / se1)
    assert power(n) >= 0.8 > power(n - 1)
    assert required_sample_size(sd=2.0, mde=0.5) == math.ceil(2 * (1.959964 + 0.841621) ** 2 * 4 / 0.25)
    assert required_sample_size(p_baseline=0.5, mde=-0.05) == required_sample_size(p_baseline=0.5, mde=0.05)


@pytest.mark.parametrize("kwargs, match", [
    ({"mde": 0.0, "sd": 1.0}, "nonzero"),
    ({"mde": 0.1}, "exactly one"),
    ({"mde": 0.1, "sd": 1.0, "p_baseline": 0.5}, "exactly one"),
    ({"mde": 0.2, "p_baseline": 0.9}, r"p_baseline \+ mde"),
    ({"mde": 0.1, "sd": 1.0, "power": 1.0}, "power"),
])
def test_required_sample_size_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        required_sample_size(**kwargs)


# -- guardrails ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("control, treatment, direction, tolerance, relative, interval, breached", [
    (100.0, 125.0, "increase_is_bad", 0.2, True, None, True),       # 25% slower, 20% tolerated
    (100.0, 115.0, "increase_is_bad", 0.2, True, None, False),
    (0.90, 0.86, "decrease_is_bad", 0.03, False, None, True),
    (0.90, 0.95, "decrease_is_bad", 0.0, False, None, False),       # better is never a breach
    (0.02, 0.04, "increase_is_bad", 0.01, False, (0.005, 0.035), False),  # interval reaches "no worse"
    (0.02, 0.04, "increase_is_bad", 0.01, False, (0.012, 0.028), True),
    (None, 0.04, "increase_is_bad", 0.0, False, None, False),        # not evaluated
])
def test_guardrails(control, treatment, direction, tolerance, relative, interval, breached):
    r = evaluate_guardrail("g", control, treatment, direction, tolerance, relative=relative, interval=interval)
    assert r.breached is breached
    assert r.evaluated is (control is not None)


def test_guardrail_validation():
    with pytest.raises(ValueError, match="direction"):
        evaluate_guardrail("g", 1.0, 2.0, "up")
    with pytest.raises(ValueError, match="interval"):
        evaluate_guardrail("g", 1.0, 2.0, "increase_is_bad", interval=(2.0, 1.0))
    with pytest.raises(ValueError, match="tolerance"):
        evaluate_guardrail("g", 1.0, 2.0, "increase_is_bad", -0.1)
