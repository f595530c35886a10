"""The label-free accuracy estimate, and how well it predicted a re-evaluation's measured accuracy.

Windows get ``detectors.classification.estimate_accuracy(table, confidences)`` with the calibration table
of the latest successful re-evaluation. When the next re-evaluation measures accuracy on the held-out set,
:func:`estimate_from_tables` says what the *previous* table would have estimated for that set's
confidences, so the result can show estimate against measured (a table estimates its own data exactly, by
construction, so only an earlier table is a fair test).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from detectors.accuracy_estimate import AccuracyEstimate, LabelEvidence, blended_accuracy
from detectors.classification import CalibrationTable, estimate_accuracy
from monitor.results import LabelFreeEstimate, ReevalReport, WindowEstimate, WindowResult, iso_ms

__all__ = ["estimate_from_tables", "LabelFreeEstimator"]


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


@dataclass
class _Window:
    window_start: str | None
    events: int
    confidences: np.ndarray
    estimate: float | None = None
    interval: AccuracyEstimate | None = None


class LabelFreeEstimator:
    """The calibration table in use, and the latest window of each stream estimated with it.

    ``sink`` (a ``PrometheusSink`` or None) gets ``nlp_estimated_accuracy_ratio``; at most ``max_streams``
    streams are kept. Thread-safe: windows arrive from the loop, ``status()`` is read from the HTTP thread.
    """

    def __init__(self, sink=None, *, max_streams: int = 20, targets: Callable[[str], bool] = lambda model: True):
        self._sink = sink
        self._max_streams = max_streams
        self._targets = targets
        self._lock = threading.Lock()
        self._table: CalibrationTable | None = None
        self._table_run: int | None = None  # SQL id of the run the table comes from
        self._table_from: int | None = None  # its started_at_ms, until it is stored
        self._windows: dict[tuple[str, str, str], _Window] = {}  # by (model, version, segment or "")

    def resume(self, table: CalibrationTable, run_id: int | None) -> None:
        """Use a stored run's table (after a restart)."""
        with self._lock:
            self._table, self._table_run = table, run_id

    def adopt(self, report: ReevalReport, started_at_ms: int) -> ReevalReport:
        """Add estimate-vs-measured (``label_free_estimate``) to a run's report, and adopt its table."""
        table = report.calibration
        if table is None:
            return report
        with self._lock:
            previous, previous_run = self._table, self._table_run
            self._table, self._table_run, self._table_from = table, None, started_at_ms
            windows = []
            for (m, v, seg), w in sorted(self._windows.items()):
                before = w.estimate
                w.estimate, w.interval = estimate_accuracy(table, w.confidences), None  # until the next window
                windows.append(WindowEstimate(m, v, seg, w.window_start, w.events, before, w.estimate))
        estimate = LabelFreeEstimate(
            calibration_run=previous_run, calibration="none" if previous is None else "previous_run",
            heldout_estimated_accuracy=estimate_from_tables(previous, table), heldout_accuracy=report.accuracy,
            windows=tuple(windows),
        )  # fmt: skip
        if self._sink is not None:
            for w in windows:
                self._sink.set_estimated_accuracy(w.model, w.version, w.estimated_accuracy, segment=w.segment)
        return report.with_estimate(estimate)

    def stored(self, started_at_ms: int, run_id: int) -> None:
        """A successful run was stored as ``run_id``: name it as the table's run if the table is its."""
        with self._lock:
            if self._table_from == started_at_ms:
                self._table_run = run_id

    def observe(self, result: WindowResult, confidences: np.ndarray,
                evidence: LabelEvidence | None = None) -> AccuracyEstimate | None:
        """Estimate a closed window's accuracy from its confidences: the table in use as the prior, the
        realised labels' ``evidence`` (``labels.refresh_calibration``) updating it; return it with its
        interval (None without table and evidence)."""
        model, version = result.model, result.version
        if not self._targets(model):
            return None
        c = np.asarray(confidences, dtype=np.float64)
        c = c[np.isfinite(c)]
        if c.size == 0:
            return None
        key = (model, version, result.segment or "")  # with window.by_segment, each segment's latest window
        with self._lock:
            if key not in self._windows and len(self._windows) >= self._max_streams:
                return None
            w = self._windows[key] = _Window(iso_ms(result.window_start_ms), result.events, c.copy())
            if self._table is None and evidence is None:
                return None
            est = blended_accuracy(c, self._table, evidence, shifted=result.inputs_shifted)
            w.estimate, w.interval = est.estimate, est
        if self._sink is not None:
            self._sink.set_estimated_accuracy(model, version, w.estimate, segment=key[2], interval=est)
        return est

    def status(self) -> tuple[int | None, dict]:
        """The run the table in use comes from, and the latest estimate of each stream (for ``/status``)."""
        with self._lock:
            estimates = {f"{m}/{v}" + (f"/{seg}" if seg else ""): {"window_start": w.window_start,
                                                                   "estimated_accuracy": w.estimate,
                                                                   **_interval(w.interval)}
                         for (m, v, seg), w in sorted(self._windows.items())}  # fmt: skip
            return (self._table_run if self._table is not None else None), estimates


def _interval(est: AccuracyEstimate | None) -> dict:
    """The interval's keys of a ``/status`` estimate (none before one was made)."""
    if est is None:
        return {}
    return {"estimated_accuracy_low": est.low, "estimated_accuracy_high": est.high, "estimate_reliable": est.reliable}
