"""Served against shadow: agreement, confidence and latency differences, and a KS test of the confidences.

The statistics of shadow mode (docs/experiments.md). Joining the served and shadow events of a request is
``monitor.ab.shadow``'s job; what it reports about a window of joined pairs is computed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from detectors.base import as_dict, check_in_range
from detectors.ks import KSReference

__all__ = ["ShadowSummary", "summarise_counts"]


@dataclass(frozen=True, slots=True)
class ShadowSummary:
    """Served against shadow over one window of joined pairs; differences are shadow minus served.

    ``agreement_rate`` is over the pairs where both models answered (``compared``); ``agreement_low`` is
    ``agreement_rate < min_agreement``. Confidence figures use the pairs where both confidences are known,
    latency figures those where both latencies are; ``latency_diff_p95_ms`` is the shadow's p95 minus the
    served one's (a difference of percentiles, not a percentile of differences). The KS test compares the
    two confidence distributions; the two samples are paired, hence positively correlated, which makes the
    test conservative (a real difference is, if anything, under-reported). Undefined figures are NaN
    (``None`` in ``to_dict``).
    """

    n: int
    compared: int
    agreement_rate: float
    min_agreement: float
    agreement_low: bool
    served_errors: int
    shadow_errors: int
    confidence_n: int
    confidence_mean_served: float
    confidence_mean_shadow: float
    confidence_diff_mean: float
    ks_statistic: float
    ks_p_value: float
    alpha: float
    confidence_drifted: bool
    latency_n: int
    latency_diff_mean_ms: float
    latency_p95_served_ms: float
    latency_p95_shadow_ms: float
    latency_diff_p95_ms: float

    def to_dict(self) -> dict:
        """Return the result as JSON-able values (fields in order; undefined numbers are ``None``)."""
        return as_dict(self)


def summarise_counts(
    *, n: int, compared: int, agree: int, served_errors: int, shadow_errors: int, confidences: np.ndarray,
    latencies: np.ndarray, min_agreement: float = 0.9, alpha: float = 0.01,
) -> ShadowSummary:  # fmt: skip
    """Summarise one window of served/shadow pairs from exact counts and (possibly sampled) value arrays.

    ``confidences`` and ``latencies`` hold the pairs where both values are known (served in column 0); a
    uniform sample of them gives unbiased distribution figures while the counts stay exact. Pure: the same
    inputs always give the same summary.

    Parameters
    ----------
    n, compared, agree : int
        Pairs in the window; pairs where both models answered; of those, pairs with the same class.
    served_errors, shadow_errors : int
        Pairs where the served (shadow) model answered with an error.
    confidences, latencies : numpy.ndarray
        ``(k, 2)`` arrays, served values in column 0, shadow values in column 1.
    min_agreement : float, default 0.9
        Agreement rate below which ``agreement_low`` is set, in [0, 1].
    alpha : float, default 0.01
        Significance level of the KS test of the confidences, in (0, 1).

    Examples
    --------
    >>> conf = np.column_stack([np.full(100, 0.9), np.full(100, 0.8)])
    >>> lat = np.column_stack([np.full(100, 10.0), np.full(100, 14.0)])
    >>> s = summarise_counts(n=100, compared=100, agree=90, served_errors=0, shadow_errors=0,
    ...                      confidences=conf, latencies=lat, min_agreement=0.95)
    >>> s.agreement_rate, s.agreement_low, round(s.confidence_diff_mean, 3), s.latency_diff_p95_ms
    (0.9, True, -0.1, 4.0)
    """
    min_agreement = check_in_range("min_agreement", min_agreement, 0.0, 1.0)
    alpha = check_in_range("alpha", alpha, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    agreement = agree / compared if compared else math.nan
    conf, lat = confidences, latencies
    nan = math.nan
    ks_stat = ks_p = nan
    if conf.shape[0]:
        ks_stat, ks_p = KSReference(conf[:, 0], name="served confidences").test(conf[:, 1])
    if lat.shape[0]:
        p95_served, p95_shadow = (float(np.percentile(lat[:, k], 95.0)) for k in (0, 1))
    else:
        p95_served = p95_shadow = nan
    return ShadowSummary(
        n=n, compared=compared, agreement_rate=agreement, min_agreement=min_agreement,
        agreement_low=bool(agreement < min_agreement), served_errors=served_errors, shadow_errors=shadow_errors,
        confidence_n=int(conf.shape[0]),
        confidence_mean_served=float(conf[:, 0].mean()) if conf.shape[0] else nan,
        confidence_mean_shadow=float(conf[:, 1].mean()) if conf.shape[0] else nan,
        confidence_diff_mean=float((conf[:, 1] - conf[:, 0]).mean()) if conf.shape[0] else nan,
        ks_statistic=ks_stat, ks_p_value=ks_p, alpha=alpha, confidence_drifted=bool(ks_p < alpha),
        latency_n=int(lat.shape[0]),
        latency_diff_mean_ms=float((lat[:, 1] - lat[:, 0]).mean()) if lat.shape[0] else nan,
        latency_p95_served_ms=p95_served, latency_p95_shadow_ms=p95_shadow,
        latency_diff_p95_ms=p95_shadow - p95_served,
    )  # fmt: skip
