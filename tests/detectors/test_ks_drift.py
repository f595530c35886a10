"""KS input drift: agreement with scipy, feature selection, correction and the effect-size floor."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors.correction import adjust_p_values
from detectors import ks
from detectors.ks import KSDrift, KSReference, ks_p_value, ks_statistic_sorted


def _sample(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    if kind == "normal":
        return rng.normal(rng.uniform(-0.3, 0.3), 1.0, n)
    if kind == "integers":  # heavy ties, within and across the samples
        return rng.integers(0, 6, n).astype(np.float64)
    return np.round(rng.exponential(1.0, n), 1)  # "rounded": ties and a skew


@pytest.mark.parametrize("kind", ["normal", "integers", "rounded"])
def test_statistic_equals_ks_2samp(kind):
    rng = np.random.default_rng(0)
    for _ in range(200):
        n1, n2 = rng.integers(1, 400, size=2)
        a, b = _sample(rng, kind, n1), _sample(rng, kind, n2)
        expected = stats.ks_2samp(a, b).statistic
        assert ks_statistic_sorted(np.sort(a), np.sort(b)) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 0.0),  # identical
        ([1.0, 2.0], [3.0, 4.0, 5.0], 1.0),  # disjoint
        ([2.0], [2.0], 0.0),  # one tied value each
        ([1.0, 1.0, 1.0], [1.0, 2.0], 0.5),  # ties straddling
    ],
)
def test_statistic_edge_cases(a, b, expected):
    assert ks_statistic_sorted(np.array(a), np.array(b)) == pytest.approx(expected, abs=1e-12)
    assert stats.ks_2samp(a, b).statistic == pytest.approx(expected, abs=1e-12)
    ref = KSReference(np.array(a))
    assert ref._runs is not None or len(set(a)) > len(a) / 2
    assert ref.statistic(np.array(b)) == ks_statistic_sorted(np.array(a), np.array(b))


@pytest.mark.parametrize("kind", ["integers", "rounded", "constant", "mixed"])
def test_runs_statistic_is_the_merge_statistic_bit_for_bit(kind):
    """A reference with many ties is tested at the window's distinct values (_statistic_runs): the float must
    be the one the merge over every value gives (checkpointed and stored results compare byte for byte)."""
    rng = np.random.default_rng(7)
    runs_used = 0
    for _ in range(400):
        n1, n2 = (int(n) for n in rng.integers(1, 600, size=2))
        if kind == "integers":
            a, b = rng.integers(0, 12, n1), rng.integers(rng.integers(0, 4), 12, n2)
        elif kind == "rounded":
            a, b = np.round(rng.exponential(1.0, n1), 1), np.round(rng.exponential(rng.uniform(0.8, 1.5), n2), 2)
        elif kind == "constant":  # a reference of one value (oov_rate without a vocabulary hit, digit_ratio 0)
            a, b = np.zeros(n1), np.where(rng.random(n2) < 0.7, 0.0, rng.random(n2))
        else:  # distinct values and runs on both sides
            a = np.concatenate((np.zeros(n1), rng.normal(0, 1, n1 // 3)))
            b = np.concatenate((np.zeros(n2 // 2), rng.normal(0.2, 1, n2)))
        a, b = np.sort(a.astype(np.float64)), np.sort(b.astype(np.float64))
        ref = KSReference(a)
        runs_used += ref._runs is not None
        expected = ks._statistic(ref.sorted, ref._right, b)
        assert ref.statistic(b) == expected  # exact: no tolerance
        assert expected == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert runs_used > 300  # the property is about the runs path: it must have been taken


def test_a_reference_of_mostly_distinct_values_keeps_the_merge():
    rng = np.random.default_rng(3)
    assert KSReference(rng.normal(size=1000))._runs is None
    assert KSReference(rng.integers(0, 10, 1000).astype(float))._runs is not None
    assert KSReference(np.array([]))._runs is None


def test_statistic_rejects_unsorted_or_empty_input():
    with pytest.raises(ValueError, match="window_sorted"):
        ks_statistic_sorted(np.array([1.0, 2.0]), np.array([3.0, 1.0]))
    with pytest.raises(ValueError, match="ref_sorted"):
        ks_statistic_sorted(np.array([]), np.array([1.0]))


def test_p_value_equals_ks_2samp_asymp():
    rng = np.random.default_rng(1)
    for _ in range(100):
        n1, n2 = rng.integers(2, 3000, size=2)
        a, b = rng.normal(0.0, 1.0, n1), rng.normal(rng.uniform(0.0, 0.4), 1.0, n2)
        expected = stats.ks_2samp(a, b, method="asymp")
        p = ks_p_value(ks_statistic_sorted(np.sort(a), np.sort(b)), n1, n2)
        assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_p_value_equals_kstwo_sf_across_its_branches():
    # Statistics from "nothing" to "certain" at sizes on both sides of scipy's n = 140 switch, including the
    # 2.2 <= n d^2 < 370 branch that ks_p_value evaluates with its own series.
    pairs = [(2, 5), (100, 100), (300, 290), (1000, 1000), (10_000, 10_000), (200_000, 10_000)]
    for n_ref, n_window in pairs:
        n = float(np.round(n_ref * n_window / (n_ref + n_window)))
        d = np.concatenate([np.linspace(0.0, 0.999, 40), np.sqrt(np.linspace(2.2, 369.0, 15) / n)])
        d = d[d <= 1.0]
        expected = stats.kstwo.sf(d, n)
        got = ks_p_value(d, n_ref, n_window)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-300)


def test_p_value_broadcasts_and_stays_a_probability():
    p = ks_p_value(np.array([0.0, 0.05, 1.0]), np.array([100, 1000, 10]), 500)
    assert p.shape == (3,)
    assert p[0] == 1.0 and 0.0 <= p[2] <= p[1] <= 1.0
    # Two single-value samples: scipy's effective size is 0 (p NaN); ours is 1.
    assert ks_p_value(1.0, 1, 1) == pytest.approx(stats.kstwo.sf(1.0, 1))


def test_asymptotic_p_value_is_close_to_the_exact_one_on_moderate_sizes():
    # The tolerance stated in detectors/ks.py's docstring.
    rng = np.random.default_rng(2)
    for _ in range(60):
        n1, n2 = rng.integers(200, 2000, size=2)
        a, b = rng.normal(0.0, 1.0, n1), rng.normal(rng.uniform(0.0, 0.3), 1.0, n2)
        exact = stats.ks_2samp(a, b, method="exact").pvalue
        asymp = ks_p_value(ks_statistic_sorted(np.sort(a), np.sort(b)), n1, n2)
        assert abs(asymp - exact) <= 0.01
        if 1e-300 < exact < 0.05:
            assert asymp == pytest.approx(exact, rel=0.1)


def test_window_test_matches_scipy_per_feature_with_non_finite_values_and_unequal_lengths():
    rng = np.random.default_rng(3)
    reference = {
        "a": np.append(rng.normal(0.0, 1.0, 3000), [np.nan, np.inf]),
        "b": rng.integers(0, 10, 2500).astype(np.float64),
        "c": rng.exponential(1.0, 1000),
    }
    window = {
        "a": np.append(rng.normal(0.2, 1.0, 700), [np.nan, -np.inf, np.nan]),
        "b": rng.integers(0, 11, 900).astype(np.float64),
        "c": rng.exponential(1.3, 300),
    }
    result = KSDrift(reference).test(window)

    assert [f.feature for f in result.features] == ["a", "b", "c"]
    for f in result.features:
        ref = reference[f.feature][np.isfinite(reference[f.feature])]
        win = window[f.feature][np.isfinite(window[f.feature])]
        expected = stats.ks_2samp(ref, win, method="asymp")
        assert (f.reference_n, f.window_n) == (ref.size, win.size)
        assert f.statistic == pytest.approx(expected.statistic, abs=1e-9)
        assert f.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_same_length_window_block_matches_scipy():
    # The common case (every feature a column of one reservoir) takes the one-sort-for-all path.
    rng = np.random.default_rng(4)
    rows = rng.normal(0.0, 1.0, (400, 5)) + np.arange(5) * 0.05
    reference = {f"f{i}": rng.normal(0.0, 1.0, 1000) for i in range(5)}
    result = KSDrift(reference).test({f"f{i}": rows[:, i] for i in range(5)})
    for i, f in enumerate(result.features):
        assert f.statistic == pytest.approx(stats.ks_2samp(reference[f"f{i}"], rows[:, i]).statistic, abs=1e-9)


def test_tests_only_features_with_finite_values_on_both_sides_in_reference_order():
    rng = np.random.default_rng(5)
    detector = KSDrift({
        "z": rng.normal(size=100),
        "empty_ref": np.array([np.nan, np.nan]),
        "missing_in_window": rng.normal(size=100),
        "all_nan_in_window": rng.normal(size=100),
        "a": rng.normal(size=100),
    })
    result = detector.test({
        "a": rng.normal(size=50),
        "empty_ref": rng.normal(size=50),
        "all_nan_in_window": np.full(50, np.nan),
        "z": rng.normal(size=50),
        "not_in_reference": rng.normal(size=50),
    })
    assert detector.feature_names == ("z", "empty_ref", "missing_in_window", "all_nan_in_window", "a")
    assert [f.feature for f in result.features] == ["z", "a"]


def test_window_without_a_shared_feature_is_quiet():
    result = KSDrift({"a": np.arange(10.0)}).test({"b": np.arange(10.0)})
    assert result.features == () and result.drifted is False
    assert result.to_dict()["features"] == {}


@pytest.mark.parametrize("correction", ["bh", "bonferroni"])
def test_p_values_are_adjusted_across_the_tested_features(correction):
    rng = np.random.default_rng(6)
    reference = {f"f{i}": rng.normal(0.0, 1.0, 800) for i in range(6)}
    window = {f"f{i}": rng.normal(0.04 * i, 1.0, 400) for i in range(6)}
    result = KSDrift(reference, correction=correction).test(window)

    raw = np.array([f.p_value for f in result.features])
    np.testing.assert_allclose([f.p_value_adjusted for f in result.features], adjust_p_values(raw, correction))
    assert result.correction == correction


def test_feature_is_drifted_iff_adjusted_p_below_alpha_and_statistic_at_least_min_effect():
    rng = np.random.default_rng(7)
    reference = {f"f{i}": rng.normal(0.0, 1.0, 2000) for i in range(8)}
    window = {f"f{i}": rng.normal(0.05 * i, 1.0, 1500) for i in range(8)}
    result = KSDrift(reference, alpha=0.05, min_effect=0.08).test(window)

    verdicts = [f.p_value_adjusted < 0.05 and f.statistic >= 0.08 for f in result.features]
    assert [f.drifted for f in result.features] == verdicts
    assert any(verdicts) and not all(verdicts)  # the data exercises both outcomes
    assert result.drifted is any(verdicts)
    assert {f.threshold for f in result.features} == {0.05}


def test_tiny_shift_in_a_huge_window_is_significant_but_not_drift():
    rng = np.random.default_rng(8)
    reference = {"x": rng.normal(0.0, 1.0, 200_000)}
    window = {"x": rng.normal(0.03, 1.0, 200_000)}

    feature = KSDrift(reference, min_effect=0.1).test(window).features[0]
    assert feature.p_value_adjusted < 1e-6
    assert feature.statistic < 0.1
    assert feature.drifted is False
    assert KSDrift(reference, min_effect=0.0).test(window).features[0].drifted is True


def test_reference_is_copied_at_construction():
    reference = np.arange(100.0)
    detector = KSDrift({"x": reference})
    before = detector.test({"x": np.arange(50.0)})
    reference[:] = 1000.0
    assert detector.test({"x": np.arange(50.0)}) == before


def test_window_arrays_are_not_modified():
    rng = np.random.default_rng(9)
    column = np.append(rng.normal(size=100), np.nan)
    kept = column.copy()
    KSDrift({"x": rng.normal(size=100)}).test({"x": column})
    np.testing.assert_array_equal(column, kept)


def test_two_dimensional_window_column_is_rejected():
    with pytest.raises(ValueError, match=r"window\['x'\]"):
        KSDrift({"x": np.arange(10.0)}).test({"x": np.ones((5, 2))})
