"""A window's accuracy from its confidences: the held-out calibration as a prior, realised labels updating it.

Per equal-width confidence bin (the binning of :mod:`detectors.classification`), the bin's accuracy ``p_b`` has
a Beta posterior: the held-out table's pairs of that bin are the prior, their weight capped at ``prior_weight``
pairs so that a large held-out set cannot outvote what the live labels say, and the (decayed) realised labels
of the bin are added to it. A few early labels move a bin little; many labels dominate it. A bin neither the
table nor the labels saw gets a weak prior (``EMPTY_BIN_WEIGHT`` pairs) centred on the window's own mean
confidence there (the rule of ``estimate_accuracy``: as if calibrated).

The table may be stale (the model's errors changed since it was fitted), so a bin's prior is discounted by how
far the labels contradict it, a random-effects view of the two sources with the table's variance inflated
(Birge ratio): with ``d`` the difference of their accuracies and ``v`` its sampling variance, ``Q = d**2 / v``
is the 1-degree-of-freedom heterogeneity statistic, and above ``DISAGREEMENT_CHI2`` (its 95% point) the prior
keeps ``DISAGREEMENT_CHI2 / Q`` of its pairs: just enough variance that the two agree at that level. Labels that
agree with the table leave it whole; many labels that contradict it replace it (the mean follows them, and the
posterior widens, having fewer pairs); one or two labels cannot swing a bin (their ``v`` is large).
The decayed label counts are used as counts: with weights at most 1 that is fewer than Kish's effective
number ``(sum w)**2 / sum w**2``, so the labels' variance is not understated.

The window's estimate is the mean, over its confidences, of their bins' posterior means. Its interval is for
the accuracy the window's own predictions will realise: per bin, the posterior's variance plus the binomial
variance of that bin's predictions, summed, and a Beta distribution with that mean and variance gives the
quantiles (bounded in [0, 1], unlike a normal approximation near 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from detectors.classification import CalibrationTable

__all__ = ["AccuracyEstimate", "LabelEvidence", "blended_accuracy", "EMPTY_BIN_WEIGHT", "DISAGREEMENT_CHI2"]

# Pairs of prior weight for a bin neither the held-out table nor the labels saw (centred on the window's mean
# confidence in that bin): enough to be a number, weak enough that the first label there moves it.
EMPTY_BIN_WEIGHT = 2.0
# The 95% point of chi-square with 1 degree of freedom: a bin's prior (the held-out table) that the labels
# contradict beyond it is discounted (``_discount_prior``); one within it keeps all its pairs.
DISAGREEMENT_CHI2 = float(stats.chi2.ppf(0.95, 1))


@dataclass(frozen=True)
class LabelEvidence:
    """Realised labels per confidence bin (decayed pairs and correct ones) and how far to trust them.

    ``prior_weight``: at most this many held-out pairs count per bin; ``min_labels``: an estimate of a window
    whose inputs shifted is reliable only with at least this many (decayed) labelled pairs in its bins.
    """

    labelled: tuple[float, ...]
    correct: tuple[float, ...]
    prior_weight: float = 100.0
    min_labels: float = 200.0


@dataclass(frozen=True)
class AccuracyEstimate:
    """A window's estimated accuracy, its interval at ``level``, the realised labels behind it, and whether
    it can be trusted (``reliable``: false when the inputs shifted and few labels support the table)."""

    estimate: float
    low: float
    high: float
    level: float
    labelled: float  # decayed realised-label pairs in the bins of the window's confidences
    reliable: bool = True


def blended_accuracy(confidence, prior: CalibrationTable | None, evidence: LabelEvidence | None = None, *,
                     shifted: bool = False, level: float = 0.95) -> AccuracyEstimate:
    """Estimate a window's accuracy from its ``confidence`` values.

    Parameters
    ----------
    confidence : array of float in [0, 1]
        The window's top-class confidences (non-empty).
    prior : CalibrationTable or None
        The held-out table (any number of bins: each of its bins counts in the bin of its mean confidence).
    evidence : LabelEvidence or None
        Realised labels per bin; the number of its bins sets the estimate's (else the table's, else 10).
    shifted : bool
        The window's input or embedding drift was flagged (calibration transfer assumes it was not).
    level : float
        The interval's probability, in (0, 1).

    Examples
    --------
    >>> from detectors.classification import fit_confidence_calibration
    >>> t = fit_confidence_calibration([0.95] * 100, [True] * 80 + [False] * 20, bins=2)
    >>> e = blended_accuracy([0.95] * 200, t)
    >>> round(e.estimate, 3), e.low < e.estimate < e.high
    (0.8, True)
    >>> e = blended_accuracy([0.95] * 200, t, LabelEvidence((0, 900), (0, 720)))  # the labels agree: 80 %
    >>> round(e.estimate, 3), e.reliable
    (0.8, True)
    >>> e = blended_accuracy([0.95] * 200, t, LabelEvidence((0, 900), (0, 900)))  # always right: the table is stale
    >>> round(e.estimate, 3), e.reliable
    (1.0, True)
    >>> blended_accuracy([0.95] * 200, t, shifted=True).reliable  # inputs shifted, no label to check the table
    False
    """
    if evidence is None:
        bins = prior.bins if prior is not None else 10
        evidence = LabelEvidence((0.0,) * bins, (0.0,) * bins)
    prior_weight = evidence.prior_weight
    if not prior_weight > 0:
        raise ValueError(f"prior_weight must be positive, got {prior_weight!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    n_lab, ok_lab = np.asarray(evidence.labelled, dtype=np.float64), np.asarray(evidence.correct, dtype=np.float64)
    bins = n_lab.size
    if bins < 1 or ok_lab.shape != n_lab.shape or np.any(ok_lab > n_lab + 1e-9) or np.any(ok_lab < 0):
        raise ValueError("labelled and correct must be equally long, non-empty, with 0 <= correct <= labelled")
    c = np.asarray(confidence, dtype=np.float64)
    if c.ndim != 1 or c.size == 0 or not np.all(np.isfinite(c)):
        raise ValueError("confidence must be a non-empty 1-D array of finite values")
    edges = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    idx = np.searchsorted(edges, c, side="left")
    k = np.bincount(idx, minlength=bins).astype(np.float64)
    conf_mean = np.bincount(idx, weights=c, minlength=bins) / np.maximum(k, 1)
    a0, b0 = _prior(prior, bins, edges, prior_weight)
    empty = a0 + b0 <= 0
    a0 = np.where(empty, EMPTY_BIN_WEIGHT * conf_mean, a0)
    b0 = np.where(empty, EMPTY_BIN_WEIGHT * (1 - conf_mean), b0)
    a0, b0 = _discount_prior(a0, b0, n_lab, ok_lab)
    a, b = a0 + ok_lab, b0 + (n_lab - ok_lab)
    mean = a / (a + b)
    var_p = mean * (1 - mean) / (a + b + 1)
    n = float(c.size)
    estimate = float((k * mean).sum() / n)
    # Realised accuracy of the window: per bin, Binomial(k_b, p_b) hits with p_b ~ Beta(a_b, b_b).
    var = float((k * (mean * (1 - mean) - var_p) + k * k * var_p).sum() / (n * n))
    low, high = _beta_interval(estimate, var, level)
    support = float(n_lab[k > 0].sum())
    return AccuracyEstimate(estimate, low, high, level, support, reliable=not (shifted and support < evidence.min_labels))


def _prior(table: CalibrationTable | None, bins: int, edges: np.ndarray, cap: float) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.zeros(bins), np.zeros(bins)
    if table is not None:
        for n, acc, m in zip(table.counts, table.accuracy, table.mean_confidence):
            if n:
                i = int(np.searchsorted(edges, m, side="left"))
                a[i] += n * acc
                b[i] += n * (1 - acc)
    w = a + b
    scale = np.where(w > cap, cap / np.maximum(w, 1e-300), 1.0)
    return a * scale, b * scale


def _discount_prior(a0: np.ndarray, b0: np.ndarray, n_lab: np.ndarray, ok_lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The prior's pairs per bin, fewer where the labels contradict it beyond chance (see the module docstring).

    ``Q = d**2 / v``: the squared difference of the prior's and the labels' accuracy over its sampling variance
    (pooled ``p (1 - p) (1/n0 + 1/n)``). With ``Q`` above ``DISAGREEMENT_CHI2`` the prior keeps the share
    ``DISAGREEMENT_CHI2 / Q`` of its pairs: its variance is inflated until the two agree at that level.
    Elementwise per bin (no sum): the same whatever order the evidence came in.
    """
    n0 = a0 + b0
    both = (n0 > 0) & (n_lab > 0)
    n0s, nls = np.where(both, n0, 1.0), np.where(both, n_lab, 1.0)
    pooled = (a0 + ok_lab) / (n0s + nls)
    v = pooled * (1 - pooled) * (1 / n0s + 1 / nls)
    d2 = (a0 / n0s - ok_lab / nls) ** 2
    far = both & (d2 > DISAGREEMENT_CHI2 * v)  # d2 > 0 there
    keep = np.where(far, DISAGREEMENT_CHI2 * v / np.where(far, d2, 1.0), 1.0)
    return a0 * keep, b0 * keep


def _beta_interval(mean: float, var: float, level: float) -> tuple[float, float]:
    """The central ``level`` interval of the Beta distribution with this mean and variance."""
    tail = (1 - level) / 2
    if not 0 < mean < 1 or var <= 0:
        return mean, mean
    nu = mean * (1 - mean) / var - 1
    if nu <= 0:  # wider than any Beta with this mean: the whole range
        return 0.0, 1.0
    lo, hi = stats.beta.ppf([tail, 1 - tail], mean * nu, (1 - mean) * nu)
    return float(lo), float(hi)
