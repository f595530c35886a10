"""Latency percentiles of a window."""

from __future__ import annotations

import numpy as np

from detectors.base import LatencySummary

__all__ = ["latency_summary", "percentile_or_nan"]


def latency_summary(latencies_ms: np.ndarray) -> LatencySummary:
    """Return exact p50, p95, p99 and max of the finite latencies, in milliseconds.

    Percentiles are ``np.percentile``'s default (linear interpolation between the closest ranks). Non-finite
    values are left out; without a finite value every number is NaN and ``count`` is 0.

    Examples
    --------
    >>> latency_summary(np.append(np.arange(1.0, 102.0), np.nan)).to_dict()
    {'p50': 51.0, 'p95': 96.0, 'p99': 100.0, 'max': 101.0, 'count': 101}
    >>> latency_summary(np.array([])).to_dict()
    {'p50': None, 'p95': None, 'p99': None, 'max': None, 'count': 0}
    """
    values = np.asarray(latencies_ms, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        nan = float("nan")
        return LatencySummary(p50=nan, p95=nan, p99=nan, max=nan, count=0)
    p50, p95, p99 = np.percentile(values, [50.0, 95.0, 99.0])
    return LatencySummary(p50=float(p50), p95=float(p95), p99=float(p99), max=float(values.max()),
                          count=int(values.size))


def percentile_or_nan(values: np.ndarray, q: float, *, min_samples: int = 1) -> float:
    """Return the ``q``-th percentile (``np.percentile``'s default) of the finite values, NaN below ``min_samples``.

    Examples
    --------
    >>> percentile_or_nan(np.arange(1.0, 102.0), 99.0)
    100.0
    >>> percentile_or_nan(np.arange(10.0), 99.0, min_samples=50)
    nan
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    return float(np.percentile(x, q)) if x.size >= max(1, min_samples) else float("nan")
