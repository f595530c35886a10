"""Confidence shift: KS agreement with scipy, the reported summaries, and entropy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from detectors.confidence import ConfidenceShift, entropy_bits


def test_statistic_and_p_value_match_scipy_asymp():
    rng = np.random.default_rng(0)
    reference = rng.beta(8.0, 2.0, 3000)
    window = np.append(rng.beta(5.0, 2.0, 800), [np.nan, np.inf])
    result = ConfidenceShift(reference).test(window)

    expected = stats.ks_2samp(reference, window[:800], method="asymp")
    assert result.statistic == pytest.approx(expected.statistic, abs=1e-9)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert (result.n, result.reference_n) == (800, 3000)


def test_summaries_and_their_deltas():
    reference = np.array([0.2, 0.5, 0.9, 0.95, np.nan])
    window = np.array([0.1, 0.3, 0.5, 0.7])
    result = ConfidenceShift(reference, low_threshold=0.5).test(window)

    assert result.reference_mean == pytest.approx(np.mean([0.2, 0.5, 0.9, 0.95]))
    assert result.mean == pytest.approx(0.4)
    assert result.mean_delta == pytest.approx(0.4 - result.reference_mean)
    # "Low" is strictly below the threshold: 0.5 itself is not low.
    assert result.reference_low_ratio == pytest.approx(0.25)
    assert result.low_ratio == pytest.approx(0.5)
    assert result.low_ratio_delta == pytest.approx(0.25)
    assert result.low_threshold == 0.5


def test_verdict_needs_both_significance_and_effect():
    rng = np.random.default_rng(1)
    reference = rng.beta(8.0, 2.0, 100_000)
    window = rng.beta(8.0, 2.1, 100_000)  # a real but tiny shift
    result = ConfidenceShift(reference, min_effect=0.1).test(window)
    assert result.p_value < 0.01 and result.statistic < 0.1
    assert result.drifted is False
    assert ConfidenceShift(reference, min_effect=0.0).test(window).drifted is True


@pytest.mark.parametrize("window", [np.array([]), np.array([np.nan, np.inf])])
def test_window_without_finite_confidence_is_quiet_and_serialisable(window):
    result = ConfidenceShift(np.array([0.6, 0.9])).test(window)
    assert (result.drifted, result.statistic, result.p_value, result.n) == (False, 0.0, 1.0, 0)
    out = result.to_dict()
    json.dumps(out, allow_nan=False)
    assert out["mean_delta"] is None and out["reference_mean"] == pytest.approx(0.75)


def test_reference_without_finite_values_is_rejected():
    with pytest.raises(ValueError, match="reference_confidence"):
        ConfidenceShift(np.array([np.nan]))


def test_entropy_matches_scipy_in_bits():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(5), size=50)
    p[:5, 0] = 0.0  # zeros, the 0 * log 0 case
    p[:5] /= p[:5].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(entropy_bits(p), stats.entropy(p, base=2, axis=1), rtol=1e-12)


def test_entropy_known_values():
    p = np.array([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0.0, 0.0]])
    np.testing.assert_allclose(entropy_bits(p), [0.0, 2.0, 1.0], atol=1e-15)
    assert entropy_bits(np.empty((0, 3))).shape == (0,)


def test_entropy_needs_a_matrix():
    with pytest.raises(ValueError, match="probabilities"):
        entropy_bits(np.array([0.5, 0.5]))


def test_low_confidence_threshold_rule_and_setting():
    from detectors.confidence import low_confidence_threshold

    assert [low_confidence_threshold(k) for k in (0, 1, 2, 3, 50)] == [0.75, 0.75, 0.75, 4 / 6, 0.51]
    assert low_confidence_threshold(50, 0.3) == 0.3
    with pytest.raises(ValueError, match="setting"):
        low_confidence_threshold(2, 1.5)
