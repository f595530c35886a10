"""0/1 features tested as proportions (detectors.proportions, KSDrift(binary=...)): the p-value, the absolute
effect floor, one correction family with the KS features, and the parameters' validation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors.ks import KSDrift
from detectors.proportions import ProportionReference, two_proportion_p_value


def _bernoulli(rng, n, p):
    return (rng.random(n) < p).astype(np.float64)


@pytest.mark.parametrize("ones_a, n_a, ones_b, n_b", [
    (10, 1000, 30, 1000),     # 1% against 3%
    (0, 5000, 12, 400),       # none in the reference
    (250, 500, 240, 500),     # near a half, small difference
    (3, 200, 1, 10000),
])
def test_p_value_is_the_pearson_chi_square_of_the_2x2_table(ones_a, n_a, ones_b, n_b):
    # The pooled z-test is the uncorrected chi-square test of the 2x2 table (z^2 = chi^2).
    table = [[ones_a, n_a - ones_a], [ones_b, n_b - ones_b]]
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert two_proportion_p_value(ones_a, n_a, ones_b, n_b) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_identical_constant_samples_do_not_differ():
    assert two_proportion_p_value(0, 100, 0, 300) == 1.0
    assert two_proportion_p_value(100, 100, 300, 300) == 1.0


@pytest.mark.parametrize("args", [(1, 0, 0, 10), (11, 10, 0, 10), (-1, 10, 0, 10)])
def test_p_value_refuses_impossible_counts(args):
    with pytest.raises(ValueError, match="ones <= n"):
        two_proportion_p_value(*args)


def test_truncation_from_0_to_8_percent_is_flagged_as_a_proportion_not_by_ks():
    rng = np.random.default_rng(0)
    reference = {"truncated": np.zeros(5000), "char_length": rng.normal(80, 20, 5000)}
    window = {"truncated": _bernoulli(rng, 1000, 0.08), "char_length": rng.normal(80, 20, 1000)}
    as_ks = {f.feature: f for f in KSDrift(reference).test(window).features}
    as_share = {f.feature: f for f in KSDrift(reference, binary=["truncated"]).test(window).features}
    # the same statistic (the KS D of two 0/1 samples is the difference of their shares) ...
    assert as_ks["truncated"].statistic == pytest.approx(as_share["truncated"].statistic)
    # ... but KS's relative 0.1 floor hides it, the absolute 0.02 one does not
    assert not as_ks["truncated"].drifted and as_ks["truncated"].p_value_adjusted < 0.01
    assert as_share["truncated"].drifted and as_share["truncated"].min_effect == 0.02
    assert as_share["truncated"].to_dict()["test"] == "proportion"
    assert "test" not in as_share["char_length"].to_dict() and not as_share["char_length"].drifted


def test_the_floor_is_absolute_a_significant_half_point_is_not_drift():
    rng = np.random.default_rng(1)
    detector = KSDrift({"empty": _bernoulli(rng, 200_000, 0.010)}, binary=["empty"], min_proportion_delta=0.02)
    (f,) = detector.test({"empty": _bernoulli(rng, 200_000, 0.016)}).features
    assert f.p_value_adjusted < 1e-6 and 0.004 < f.statistic < 0.008
    assert not f.drifted


def test_binary_features_share_the_correction_family_with_ks_features():
    rng = np.random.default_rng(2)
    reference = {f"x{i}": rng.normal(0, 1, 2000) for i in range(9)} | {"empty": _bernoulli(rng, 2000, 0.02)}
    window = {f"x{i}": rng.normal(0, 1, 500) for i in range(9)} | {"empty": _bernoulli(rng, 500, 0.06)}
    result = KSDrift(reference, binary=["empty"], correction="bonferroni").test(window)
    empty = next(f for f in result.features if f.feature == "empty")
    assert [f.feature for f in result.features] == list(reference)  # reference order, one family of ten
    assert empty.p_value_adjusted == pytest.approx(min(1.0, empty.p_value * 10))


def test_false_alarms_on_null_windows_stay_near_alpha():
    rng = np.random.default_rng(3)
    detector = KSDrift({"truncated": _bernoulli(rng, 5000, 0.03)}, binary=["truncated"], alpha=0.05,
                       min_proportion_delta=0.0)
    alarms = sum(detector.test({"truncated": _bernoulli(rng, 500, 0.03)}).drifted for _ in range(400))
    assert alarms <= 0.05 * 400 * 1.6  # binomial noise around 20 expected alarms


def test_a_window_without_finite_values_of_a_binary_feature_leaves_it_untested():
    detector = KSDrift({"empty": np.array([0.0, 1.0, 0.0]), "x": np.arange(3.0)}, binary=["empty"])
    result = detector.test({"empty": np.array([np.nan]), "x": np.arange(3.0)})
    assert [f.feature for f in result.features] == ["x"]


@pytest.mark.parametrize("kwargs, reference, message", [
    ({"binary": ["truncated"]}, {"empty": np.zeros(10)}, "does not have: truncated"),
    ({"binary": "empty"}, {"empty": np.zeros(10)}, "not the string"),
    ({"binary": ["empty"]}, {"empty": np.array([0.0, 0.5])}, "must be 0 or 1"),
    ({"binary": ["empty"], "min_proportion_delta": 1.5}, {"empty": np.zeros(10)}, "min_proportion_delta"),
    ({"binary": ["empty"], "min_proportion_delta": -0.1}, {"empty": np.zeros(10)}, "min_proportion_delta"),
])
def test_parameters_are_validated(kwargs, reference, message):
    with pytest.raises(ValueError, match=message):
        KSDrift(reference, **kwargs)


def test_a_window_value_other_than_0_or_1_is_refused():
    detector = KSDrift({"empty": np.zeros(10)}, binary=["empty"])
    with pytest.raises(ValueError, match="must be 0 or 1"):
        detector.test({"empty": np.array([0.0, 2.0])})


def test_reference_keeps_counts_only():
    ref = ProportionReference(np.r_[np.zeros(95), np.ones(5), np.nan])
    assert (ref.n, ref.share) == (100, 0.05)
    assert np.isnan(ref.test(np.array([np.nan]))).all()  # no values to test
