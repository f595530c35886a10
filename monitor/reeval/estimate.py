"""The label-free accuracy estimate, and how well it predicted a re-evaluation's measured accuracy.

Windows get ``detectors.classification.estimate_accuracy(table, confidences)`` with the calibration table
of the latest successful re-evaluation. When the next re-evaluation measures accuracy on the held-out set,
:func:`estimate_from_tables` says what the *previous* table would have estimated for that set's
confidences, so the result can show estimate against measured (a table estimates its own data exactly, by
construction, so only an earlier table is a fair test).
"""

from __future__ import annotations

from detectors.classification import CalibrationTable

__all__ = ["estimate_from_tables"]


def estimate_from_tables(previous: CalibrationTable | None, current: CalibrationTable) -> float | None:
    """``estimate_accuracy(previous, c)`` for the confidences ``c`` that ``current`` was fitted on.

    Each bin of ``current`` holds ``counts[b]`` confidences with mean ``mean_confidence[b]``; each counts
    for ``previous.accuracy[b]``, or for itself where ``previous`` had no sample in that bin (the rule of
    ``estimate_accuracy``), so the per-bin sums give the exact figure. Without ``previous`` that is the mean
    confidence (the estimate of a perfectly calibrated model). ``None`` when the tables' bins differ.

    Examples
    --------
    >>> from detectors.classification import fit_confidence_calibration
    >>> old = fit_confidence_calibration([0.55, 0.6, 0.95, 0.97], [False, True, True, True], bins=2)
    >>> new = fit_confidence_calibration([0.99, 0.98, 0.3], [True, False, False], bins=2)
    >>> round(estimate_from_tables(old, new), 4)  # 0.3 falls in a bin old never saw: it counts for 0.3
    0.6
    """
    if previous is not None and previous.bins != current.bins:
        return None
    total = 0.0
    for b, (n, conf) in enumerate(zip(current.counts, current.mean_confidence)):
        if n:
            known = None if previous is None else previous.accuracy[b]
            total += n * (conf if known is None else known)
    return total / current.n
