"""Drift of a 0/1 feature as a proportion: the pooled two-sample z-test of its share of ones.

A KS test of a 0/1 feature has the right statistic (the gap between the two CDFs is exactly the
difference of the shares of ones) but the wrong effect floor: the relative scale of a continuous feature
(``min_effect = 0.1``, a tenth of the distribution) means ten percentage points here, so truncation rising
from 0% to 8% of the texts is never flagged. :class:`detectors.ks.KSDrift` tests the features it is told
are binary with :class:`ProportionReference` instead, against an ABSOLUTE floor (``min_proportion_delta``,
percentage points), in the same family of adjusted p-values as the other features.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = ["ProportionReference", "two_proportion_p_value"]


def two_proportion_p_value(ones_a: int, n_a: int, ones_b: int, n_b: int) -> float:
    """Return the two-sided p-value of the pooled two-proportion z-test of ``ones_a/n_a`` against ``ones_b/n_b``.

    Parameters
    ----------
    ones_a, n_a : int
        Ones and values of the first sample (``0 <= ones_a <= n_a``, ``n_a >= 1``).
    ones_b, n_b : int
        The same for the second sample.

    Returns
    -------
    float
        ``erfc(|z| / sqrt(2))`` with ``z = (p_a - p_b) / sqrt(p (1 - p) (1/n_a + 1/n_b))`` and ``p`` the pooled
        share. 1.0 when the pooled share is 0 or 1 (both samples all zeros, or all ones: nothing differs).

    Examples
    --------
    >>> round(two_proportion_p_value(0, 5000, 80, 1000), 12)  # 0% of the reference, 8% of the window
    0.0
    >>> round(two_proportion_p_value(50, 5000, 10, 1000), 3)  # 1% and 1%
    1.0
    >>> two_proportion_p_value(0, 100, 0, 100)
    1.0
    """
    for name, ones, n in (("a", ones_a, n_a), ("b", ones_b, n_b)):
        if n < 1 or not 0 <= ones <= n:
            raise ValueError(f"sample {name} needs 0 <= ones <= n and n >= 1, got ones={ones}, n={n}.")
    pooled = (ones_a + ones_b) / (n_a + n_b)
    variance = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)
    if variance <= 0.0:
        return 1.0
    z = (ones_a / n_a - ones_b / n_b) / math.sqrt(variance)
    return float(special.erfc(abs(z) / math.sqrt(2.0)))


class ProportionReference:
    """The share of ones of a 0/1 reference feature, ready to test windows against (the values are not kept).

    Parameters
    ----------
    values : numpy.ndarray
        One-dimensional reference sample; finite values must be 0 or 1 (non-finite ones are left out).
    name : str, default "reference"
        How errors name the sample.

    Examples
    --------
    >>> ref = ProportionReference(np.r_[np.zeros(990), np.ones(10)])  # 1% truncated
    >>> ref.n, ref.share
    (1000, 0.01)
    >>> statistic, p_value = ref.test(np.r_[np.zeros(920), np.ones(80)])  # 8% truncated
    >>> round(statistic, 3), p_value < 1e-9
    (0.07, True)
    """

    def __init__(self, values: np.ndarray, *, name: str = "reference"):
        self._name = name
        self._ones, self._n = _count_ones(name, values)

    @property
    def n(self) -> int:
        """Number of finite reference values."""
        return self._n

    @property
    def share(self) -> float:
        """Share of ones in the reference (NaN without values)."""
        return self._ones / self._n if self._n else math.nan

    def test(self, window: np.ndarray) -> tuple[float, float]:
        """Return ``(|share of the window - share of the reference|, p-value)`` for one window sample.

        The statistic is the KS statistic of two 0/1 samples, so it reads like the other features'. A window
        (or reference) without finite values gives ``(nan, nan)``.
        """
        ones, n = _count_ones("window", window)
        if n == 0 or self._n == 0:
            return math.nan, math.nan
        return abs(ones / n - self._ones / self._n), two_proportion_p_value(ones, n, self._ones, self._n)

    def __repr__(self) -> str:
        return f"ProportionReference(n={self._n}, share={self.share:.4g})"


def _count_ones(name: str, values) -> tuple[int, int]:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}.")
    a = a[np.isfinite(a)]
    if a.size and not np.isin(a, (0.0, 1.0)).all():
        bad = a[~np.isin(a, (0.0, 1.0))][0]
        raise ValueError(f"{name} is tested as a proportion, so its values must be 0 or 1; found {bad!r}.")
    return int(a.sum()), int(a.size)
