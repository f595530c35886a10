"""Prediction-class shift: chi-square, PSI and JS against scipy and the smoothing rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from detectors.classes import PredictionShift, chi_square


def _smoothed(counts: list[float], pseudo: float) -> np.ndarray:
    c = np.asarray(counts, dtype=np.float64) + pseudo
    return c / c.sum()


def test_chi_square_psi_and_js_match_scipy_with_smoothing_over_the_union():
    reference = {"pos": 600, "neg": 380, "neu": 20}
    window = {"pos": 250, "neg": 200, "spam": 50}  # "neu" absent from the window, "spam" from the reference
    result = PredictionShift(reference, pseudo_count=0.5).test(window)

    classes = ["neg", "neu", "pos", "spam"]  # sorted union
    observed = np.array([200.0, 0.0, 250.0, 50.0])
    r = _smoothed([380, 20, 600, 0], 0.5)
    w = _smoothed(observed, 0.5)
    expected = stats.chisquare(observed, r * observed.sum())
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert result.dof == len(classes) - 1
    assert result.psi == pytest.approx(np.sum((w - r) * np.log(w / r)), rel=1e-12)
    assert result.js_distance == pytest.approx(distance.jensenshannon(w, r, base=2), rel=1e-12)
    assert result.unseen_classes == ("spam",)
    assert result.n == 500


def test_chi_square_is_scipys_bit_for_bit():
    """The direct chi-square must give scipy.stats.chisquare's floats exactly (stored results compare bytes)."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        k = int(rng.integers(2, 12))
        observed = rng.integers(0, 5000, k).astype(np.float64)
        observed[0] += 1.0
        ref = rng.random(k) + 0.5
        ref /= ref.sum()
        expected = stats.chisquare(observed, ref * observed.sum())
        assert chi_square(observed, ref * observed.sum()) == (float(expected.statistic), float(expected.pvalue))
    with pytest.raises(ValueError, match="relative tolerance"):
        stats.chisquare(np.array([10.0, 10.0]), np.array([10.0, 11.0]))
    with pytest.raises(ValueError, match="relative tolerance"):
        chi_square(np.array([10.0, 10.0]), np.array([10.0, 11.0]))


def test_unseen_classes_are_sorted_and_zero_counts_do_not_count():
    detector = PredictionShift({"b": 10, "a": 10, "zero": 0})
    result = detector.test({"a": 5, "z": 1, "c": 2, "never": 0})
    assert detector.classes == ("a", "b")
    assert result.unseen_classes == ("c", "z")
    assert result.dof == 3  # a, b, c, z


def test_same_proportions_are_not_drift():
    result = PredictionShift({"a": 6000, "b": 4000}).test({"a": 600, "b": 400})
    assert result.statistic == pytest.approx(0.0, abs=0.01)
    assert result.p_value > 0.9 and result.drifted is False


def test_verdict_needs_both_significance_and_psi():
    detector = PredictionShift({"a": 500_000, "b": 500_000}, min_psi=0.1)
    result = detector.test({"a": 520_000, "b": 480_000})  # significant, PSI ~0.0016
    assert result.p_value < 1e-10 and result.psi < 0.1
    assert result.drifted is False
    assert PredictionShift({"a": 500_000, "b": 500_000}, min_psi=0.0).test({"a": 520_000, "b": 480_000}).drifted


def test_empty_window_is_quiet():
    result = PredictionShift({"a": 5, "b": 5}).test({})
    assert (result.drifted, result.statistic, result.p_value, result.n) == (False, 0.0, 1.0, 0)
    assert PredictionShift({"a": 5, "b": 5}).test({"a": 0}).p_value == 1.0


def test_single_class_in_the_union_has_no_degree_of_freedom():
    result = PredictionShift({"only": 100}).test({"only": 7})
    assert (result.dof, result.p_value, result.drifted) == (0, 1.0, False)
    assert result.to_dict()["dof"] == 0


def test_a_class_the_reference_never_predicted_drives_drift():
    result = PredictionShift({"a": 5000, "b": 5000}).test({"a": 300, "b": 300, "c": 400})
    assert result.unseen_classes == ("c",)
    assert result.drifted is True
    assert 0.0 < result.js_distance <= 1.0


@pytest.mark.parametrize("counts", [{"a": -1}, {"a": float("nan")}, {"a": "3"}, {"a": True}])
def test_bad_window_counts_are_rejected_with_the_class_named(counts):
    with pytest.raises(ValueError, match=r"counts\['a'\]"):
        PredictionShift({"a": 1}).test(counts)


@pytest.mark.parametrize("reference", [{}, {"a": 0, "b": 0}])
def test_reference_needs_a_positive_count(reference):
    with pytest.raises(ValueError, match="reference_counts"):
        PredictionShift(reference)
