"""Confidence shift: is the model as sure of itself on this window as it was on the reference?

A model that meets inputs unlike its training data often stays accurate-looking but grows less confident.
The test is the same two-sample KS test as input drift (:mod:`detectors.ks`), reported with the two
summaries people read on a dashboard: the mean confidence and the share of low-confidence predictions.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from detectors.base import ConfidenceShiftResult, check_in_range
from detectors.ks import KSReference, ks_p_value

__all__ = ["ConfidenceShift", "entropy_bits", "low_confidence_threshold"]


class ConfidenceShift:
    """Two-sample KS test of a window's prediction confidences against the reference's.

    Drifted when the p-value is below ``alpha`` **and** the KS statistic is at least ``min_effect``. The
    mean confidence and the low-confidence ratio (share of confidences below ``low_threshold``) and their
    changes against the reference are reported alongside, but do not decide the verdict. Non-finite
    confidences are left out.

    Parameters
    ----------
    reference_confidence : numpy.ndarray
        One-dimensional reference confidences (typically the top-class probability), at least one finite.
    alpha : float, default 0.01
        Significance level, in (0, 1).
    min_effect : float, default 0.1
        Smallest KS statistic that counts as drift, in [0, 1].
    low_threshold : float, default 0.5
        A confidence strictly below this is "low", in [0, 1].

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> detector = ConfidenceShift(rng.beta(8, 2, 5000), low_threshold=0.5)
    >>> result = detector.test(rng.beta(3, 2, 1000))
    >>> result.drifted, result.mean_delta < 0, result.low_ratio > result.reference_low_ratio
    (True, True, True)
    >>> detector.test(rng.beta(8, 2, 1000)).drifted
    False
    """

    def __init__(
        self,
        reference_confidence: np.ndarray,
        *,
        alpha: float = 0.01,
        min_effect: float = 0.1,
        low_threshold: float = 0.5,
    ):
        self.alpha = check_in_range("alpha", alpha, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        self.min_effect = check_in_range("min_effect", min_effect, 0.0, 1.0)
        self.low_threshold = check_in_range("low_threshold", low_threshold, 0.0, 1.0)
        self._reference = KSReference(reference_confidence, name="reference_confidence")
        if self._reference.n == 0:
            raise ValueError("reference_confidence must hold at least one finite value.")
        self.reference_mean = float(self._reference.sorted.mean())
        self.reference_low_ratio = _low_ratio(self._reference.sorted, self.low_threshold)

    @property
    def reference_n(self) -> int:
        """Number of finite reference confidences."""
        return self._reference.n

    def test(self, confidence: np.ndarray) -> ConfidenceShiftResult:
        """Test one window's confidences against the reference.

        A window without a finite confidence is not drifted (statistic 0, p-value 1) and its mean and
        low-confidence ratio are NaN.
        """
        values = np.asarray(confidence, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"confidence must be one-dimensional, got shape {values.shape}.")
        window = np.sort(values[np.isfinite(values)])
        n = int(window.size)
        if n:
            statistic = self._reference.statistic(window)
            p_value = float(ks_p_value(statistic, self._reference.n, n))
            mean = float(window.mean())
            low_ratio = _low_ratio(window, self.low_threshold)
        else:
            statistic, p_value, mean, low_ratio = 0.0, 1.0, float("nan"), float("nan")
        return ConfidenceShiftResult(
            drifted=bool(p_value < self.alpha and statistic >= self.min_effect),
            statistic=statistic,
            p_value=p_value,
            threshold=self.alpha,
            min_effect=self.min_effect,
            mean=mean,
            reference_mean=self.reference_mean,
            mean_delta=mean - self.reference_mean,
            low_ratio=low_ratio,
            reference_low_ratio=self.reference_low_ratio,
            low_ratio_delta=low_ratio - self.reference_low_ratio,
            low_threshold=self.low_threshold,
            n=n,
            reference_n=self.reference_n,
        )

    def __repr__(self) -> str:
        return (f"ConfidenceShift(reference_n={self.reference_n}, alpha={self.alpha}, "
                f"min_effect={self.min_effect}, low_threshold={self.low_threshold})")


def entropy_bits(probabilities: np.ndarray) -> np.ndarray:
    """Return the Shannon entropy in bits of each row of an ``(n, k)`` probability matrix.

    ``0 * log 0`` is taken as 0, so one-hot rows have entropy 0. Rows are used as given, not renormalised.

    Examples
    --------
    >>> entropy_bits(np.array([[0.5, 0.5], [1.0, 0.0], [0.25, 0.75]])).round(4)
    array([1.    , 0.    , 0.8113])
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be a two-dimensional (n, k) array, got shape {p.shape}.")
    # special.entr is -x ln x with entr(0) = 0: the convention, without a log(0) warning to silence.
    return special.entr(p).sum(axis=1) / np.log(2.0)


def _low_ratio(sorted_values: np.ndarray, low_threshold: float) -> float:
    return float(np.searchsorted(sorted_values, low_threshold, side="left") / sorted_values.size)


def low_confidence_threshold(n_classes: int, setting: float = 0.0) -> float:
    """Return the confidence below which a prediction counts as low: ``setting``, or the rule when it is 0.

    A fixed 0.5 can never fire for a binary model (its top probability is at least 0.5) and is nearly
    certainty-blind for 50 classes (chance is 0.02). The rule is halfway between chance and certainty,
    ``1/k + (1 - 1/k) / 2 = (k + 1) / (2k)`` for ``k`` classes: 0.75 for 2 classes, 0.67 for 3, 0.51 for 50.

    Parameters
    ----------
    n_classes : int
        Number of classes of the model (fewer than 2 is taken as 2).
    setting : float, default 0.0
        A configured threshold in (0, 1]; 0 selects the rule.

    Examples
    --------
    >>> low_confidence_threshold(2), low_confidence_threshold(50), low_confidence_threshold(50, 0.3)
    (0.75, 0.51, 0.3)
    """
    setting = check_in_range("setting", setting, 0.0, 1.0)
    if setting > 0:
        return setting
    k = max(2, int(n_classes))
    return (k + 1) / (2 * k)
