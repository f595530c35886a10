"""The shared statistics that other rooms reuse: the presorted KS reference, running moments, percentiles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors.latency import percentile_or_nan
from detectors.ks import KSReference
from detectors.sequential import ArmStats, welford_update
from detectors.shadow import summarise_counts


@pytest.mark.parametrize("seed", range(5))
def test_ks_reference_agrees_with_scipy_including_ties(seed):
    rng = np.random.default_rng(seed)
    ref = np.round(rng.normal(0, 1, 700), 1)  # rounding makes ties within and across the samples
    win = np.round(rng.normal(0.2, 1.2, 300), 1)
    expected = stats.ks_2samp(ref, win, method="asymp")
    d, p = KSReference(ref).test(win)
    assert d == pytest.approx(expected.statistic, abs=1e-15)
    assert p == pytest.approx(expected.pvalue, rel=1e-9)


def test_ks_reference_is_read_only_and_ignores_non_finite_values():
    ref = KSReference(np.array([3.0, np.nan, 1.0, 2.0, np.inf]))
    assert ref.n == 3 and ref.sorted.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError):
        ref.sorted[0] = 5.0
    assert ref.test(np.array([np.nan])) == (0.0, 1.0)
    assert KSReference(np.array([])).test(np.array([1.0])) == (0.0, 1.0)
    with pytest.raises(ValueError, match="one-dimensional"):
        ref.test(np.ones((2, 2)))


def test_welford_update_matches_the_batch_statistics():
    x = np.random.default_rng(3).normal(1e6, 3.0, 1000)  # a large mean against the spread
    state = (0, 0.0, 0.0)
    for v in x:
        state = welford_update(*state, float(v))
    batch = ArmStats.from_values(x)
    assert state[0] == batch.n
    assert state[1] == pytest.approx(batch.mean, rel=1e-12)
    assert state[2] == pytest.approx(batch.m2, rel=1e-9)


def test_percentile_or_nan():
    assert percentile_or_nan(np.array([1.0, np.nan, 3.0]), 50.0) == 2.0
    assert np.isnan(percentile_or_nan(np.array([1.0, 2.0]), 99.0, min_samples=3))
    assert np.isnan(percentile_or_nan(np.array([]), 99.0, min_samples=0))


def test_shadow_summary_ks_is_the_two_sample_test_of_served_against_shadow():
    rng = np.random.default_rng(1)
    conf = np.column_stack([rng.beta(8, 2, 400), rng.beta(5, 2, 400)])
    lat = np.column_stack([rng.gamma(2, 10, 400), rng.gamma(2, 12, 400)])
    s = summarise_counts(n=400, compared=400, agree=380, served_errors=0, shadow_errors=0, confidences=conf,
                         latencies=lat)
    expected = stats.ks_2samp(conf[:, 0], conf[:, 1], method="asymp")
    assert s.ks_statistic == pytest.approx(expected.statistic) and s.ks_p_value == pytest.approx(expected.pvalue)
    assert s.latency_p95_shadow_ms == pytest.approx(np.percentile(lat[:, 1], 95.0))
    assert s.agreement_rate == 0.95 and s.confidence_drifted == (expected.pvalue < 0.01)
