"""Prediction-class shift: does the model predict each class as often as it did on the reference?

Smoothing. Every class of the union of reference and window classes gets ``pseudo_count`` added to its
reference count, so a class the reference never predicted has a small nonzero expectation instead of an
infinite chi-square term, and every reference class gets the same so that proportions stay comparable.
The window's counts are smoothed the same way for the PSI and the Jensen–Shannon distance (which would
otherwise be infinite for a class absent from the window); the chi-square test uses the raw window counts.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np
from scipy import special
from scipy.spatial import distance

from detectors.base import PredictionShiftResult, check_in_range

__all__ = ["PredictionShift", "chi_square"]


class PredictionShift:
    """Chi-square goodness-of-fit test of a window's predicted-class counts against the reference's.

    The test runs over the union of the classes with a positive count in the reference or the window, with
    ``k - 1`` degrees of freedom. Drifted when the p-value is below ``alpha`` **and** the population
    stability index (PSI) is at least ``min_psi``: a large window makes a tiny change in class balance
    significant, and the PSI floor keeps it from raising an alarm. Classes absent from the reference are
    listed in ``unseen_classes``. See the module docstring for the smoothing.

    Parameters
    ----------
    reference_counts : Mapping[str, int]
        Reference count per predicted class; at least one positive.
    alpha : float, default 0.01
        Significance level, in (0, 1).
    min_psi : float, default 0.1
        Smallest PSI that counts as drift, at least 0. 0.1 is the usual "moderate shift" line.
    pseudo_count : float, default 0.5
        Added to every class's reference count (and window count, for PSI and JS), greater than 0.

    Examples
    --------
    >>> detector = PredictionShift({"positive": 600, "negative": 400})
    >>> result = detector.test({"positive": 300, "negative": 700})
    >>> result.drifted, result.dof
    (True, 1)
    >>> detector.test({"positive": 590, "negative": 410}).drifted
    False
    >>> detector.test({"positive": 500, "negative": 400, "neutral": 100}).unseen_classes
    ('neutral',)
    """

    def __init__(
        self,
        reference_counts: Mapping[str, int],
        *,
        alpha: float = 0.01,
        min_psi: float = 0.1,
        pseudo_count: float = 0.5,
    ):
        self.alpha = check_in_range("alpha", alpha, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        self.min_psi = check_in_range("min_psi", min_psi, 0.0, math.inf)
        self.pseudo_count = check_in_range("pseudo_count", pseudo_count, 0.0, math.inf, low_inclusive=False)
        self._reference = _positive_counts("reference_counts", reference_counts)
        if not self._reference:
            raise ValueError("reference_counts must hold at least one class with a positive count.")

    @property
    def classes(self) -> tuple[str, ...]:
        """Classes with a positive reference count, sorted."""
        return tuple(sorted(self._reference))

    def test(self, counts: Mapping[str, int]) -> PredictionShiftResult:
        """Test one window's predicted-class counts against the reference.

        A window with no prediction is not drifted (statistic 0, p-value 1, PSI 0, JS distance 0).
        """
        window = _positive_counts("counts", counts)
        classes = sorted(self._reference.keys() | window.keys())
        unseen = tuple(c for c in classes if c not in self._reference)
        observed = np.array([window.get(c, 0.0) for c in classes])
        n = float(observed.sum())
        dof = len(classes) - 1
        if n == 0:
            return self._result(0.0, 1.0, dof, 0.0, 0.0, unseen, 0)

        ref = np.array([self._reference.get(c, 0.0) for c in classes]) + self.pseudo_count
        ref /= ref.sum()
        win = observed + self.pseudo_count
        win /= win.sum()
        psi = float(np.sum((win - ref) * np.log(win / ref)))
        js = float(distance.jensenshannon(win, ref, base=2))
        if dof == 0:
            # One class: the window cannot differ from the reference in class balance.
            statistic, p_value = 0.0, 1.0
        else:
            statistic, p_value = chi_square(observed, ref * n)
        return self._result(float(statistic), float(p_value), dof, psi, js, unseen, _as_count(n))

    def _result(self, statistic, p_value, dof, psi, js, unseen, n) -> PredictionShiftResult:
        return PredictionShiftResult(
            drifted=bool(p_value < self.alpha and psi >= self.min_psi),
            statistic=statistic,
            p_value=p_value,
            threshold=self.alpha,
            dof=dof,
            psi=psi,
            js_distance=js,
            min_psi=self.min_psi,
            unseen_classes=unseen,
            n=n,
        )

    def __repr__(self) -> str:
        return (f"PredictionShift(classes={list(self.classes)}, alpha={self.alpha}, min_psi={self.min_psi}, "
                f"pseudo_count={self.pseudo_count})")


def chi_square(observed: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """Return Pearson's chi-square statistic and p-value (``len - 1`` degrees of freedom) of 1-d counts.

    The floats ``scipy.stats.chisquare(observed, expected)`` returns, by the same operations (its terms
    ``(o - e)**2 / e`` summed, ``scipy.special.chdtrc`` for the tail), and the same ``ValueError`` when the
    totals disagree by more than ``sqrt(eps)`` (relative). Without scipy's array-API and NaN-policy layers,
    which cost ~50x the arithmetic on a window's few classes.

    Examples
    --------
    >>> chi_square(np.array([16.0, 18.0, 16.0, 14.0, 12.0, 12.0]), np.full(6, 88.0 / 6))
    (2.0, 0.8491450360846096)
    """
    obs_sum, exp_sum = observed.sum(), expected.sum()
    rtol = np.finfo(np.float64).eps ** 0.5
    if abs(obs_sum - exp_sum) / min(obs_sum, exp_sum) > rtol:
        raise ValueError(f"the sum of the observed frequencies must agree with the sum of the expected frequencies "
                         f"to a relative tolerance of {rtol}, got {obs_sum} and {exp_sum}")
    statistic = ((observed - expected) ** 2 / expected).sum()
    return float(statistic), float(special.chdtrc(observed.size - 1.0, statistic))


def _positive_counts(name: str, counts: Mapping[str, int]) -> dict[str, float]:
    """Return the classes with a positive count; raise ``ValueError`` on a negative or non-numeric count."""
    out = {}
    for label, count in counts.items():
        ok = isinstance(count, numbers.Real) and not isinstance(count, bool) and math.isfinite(count)
        if not ok or count < 0:
            raise ValueError(f"{name}[{label!r}] must be a non-negative count, got {count!r}.")
        if count > 0:
            out[str(label)] = float(count)
    return out


def _as_count(n: float) -> int:
    # Counts are integers in practice; a fractional total (weighted counts) is rounded for reporting only.
    return int(round(n))
