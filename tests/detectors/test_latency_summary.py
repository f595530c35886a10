"""Latency percentiles against numpy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectors.latency import latency_summary


def test_percentiles_match_numpy_and_non_finite_values_are_dropped():
    rng = np.random.default_rng(0)
    latencies = rng.lognormal(3.0, 0.7, 1837)
    summary = latency_summary(np.concatenate([latencies, [np.nan, np.inf, -np.inf]]))
    expected = np.percentile(latencies, [50, 95, 99])
    assert (summary.p50, summary.p95, summary.p99) == pytest.approx(tuple(expected), rel=1e-15)
    assert summary.max == latencies.max()
    assert summary.count == 1837


def test_single_value():
    assert latency_summary(np.array([12.5])).to_dict() == {"p50": 12.5, "p95": 12.5, "p99": 12.5, "max": 12.5,
                                                           "count": 1}


@pytest.mark.parametrize("latencies", [np.array([]), np.array([np.nan])])
def test_no_latency_gives_nulls(latencies):
    out = latency_summary(latencies).to_dict()
    assert out == {"p50": None, "p95": None, "p99": None, "max": None, "count": 0}
    json.dumps(out, allow_nan=False)
