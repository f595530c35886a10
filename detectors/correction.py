"""Multiple-testing correction of the p-values of one window's per-feature tests."""

from __future__ import annotations

import numpy as np

__all__ = ["CORRECTIONS", "adjust_p_values"]

CORRECTIONS = ("bh", "bonferroni")


def adjust_p_values(p_values: np.ndarray, method: str = "bh") -> np.ndarray:
    """Adjust p-values for testing several hypotheses at once.

    Parameters
    ----------
    p_values : array_like, 1-D
        Unadjusted p-values in [0, 1].
    method : {"bh", "bonferroni"}
        ``"bh"``: Benjamini–Hochberg step-up adjusted p-values, which control the false discovery rate; equal
        to ``scipy.stats.false_discovery_control(p, method="bh")``. ``"bonferroni"``: ``min(1, p * m)``,
        which controls the family-wise error rate.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values in the input's order, each at least its unadjusted value and at most 1.

    Raises
    ------
    ValueError
        If ``method`` is unknown, or a p-value is NaN or outside [0, 1].

    Examples
    --------
    >>> adjust_p_values([0.01, 0.04, 0.03])
    array([0.03, 0.04, 0.04])
    >>> adjust_p_values([0.01, 0.5], method="bonferroni")
    array([0.02, 1.  ])
    """
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {method!r}.")
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be one-dimensional, got an array of shape {p.shape}.")
    # `not (p >= 0)` also catches NaN, which would otherwise sort unpredictably and poison the minimum.
    if np.any(~(p >= 0.0) | (p > 1.0)):
        raise ValueError("p_values must all be numbers in [0, 1].")
    m = p.size
    if m == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    # Same operations, in the same order, as scipy's implementation, so the results agree bit for bit.
    order = np.argsort(p)
    ranked = p[order] * (m / np.arange(1, m + 1, dtype=np.float64))
    # Step-up: a hypothesis is rejected whenever one with a larger p-value is, so take the running minimum
    # from the largest p-value down.
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.empty_like(ranked)
    adjusted[order] = ranked
    return np.clip(adjusted, 0.0, 1.0)
