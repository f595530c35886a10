"""The typed result of a re-evaluation run as the daemon holds it; part of :mod:`monitor.results`.

The job (``monitor.reeval.job``) computes a full ``ReevalResult`` in the worker process, whose edge is JSON:
``outcome.json`` carries its ``to_dict()``. The daemon reads that document back as a frozen
:class:`ReevalReport`: the figures it acts on (gauges, baseline, calibration, the model file's hash) typed,
and the rest of the document kept as the worker wrote it, because fields are only ever added
(docs/reeval.md, *JSON*) and a newer worker's must survive. The label-free estimate the daemon adds is a
:class:`LabelFreeEstimate`. ``to_dict()`` runs only where JSON leaves the daemon: the SQL ``result`` column
and ``/status``. Like :mod:`monitor.results`, this imports nothing from the rest of ``monitor``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from detectors.classification import CalibrationTable

__all__ = ["ReevalReport", "LabelFreeEstimate", "WindowEstimate"]


@dataclass(frozen=True, slots=True)
class WindowEstimate:
    """A stream's latest window estimated with the previous calibration table and with the new one."""

    model: str
    version: str
    segment: str  # "" when the stream has none
    window_start: str | None
    events: int
    estimated_accuracy_before: float | None
    estimated_accuracy: float | None

    def to_dict(self) -> dict:
        return {"model": self.model, "version": self.version, **({"segment": self.segment} if self.segment else {}),
                "window_start": self.window_start, "events": self.events,
                "estimated_accuracy_before": self.estimated_accuracy_before,
                "estimated_accuracy": self.estimated_accuracy}  # fmt: skip


@dataclass(frozen=True, slots=True)
class LabelFreeEstimate:
    """Estimate against measured: what the previous table estimated for this run's held-out confidences."""

    calibration_run: int | None  # the SQL id of the run whose table made the estimate
    calibration: str  # "none" (no earlier table) or "previous_run"
    heldout_estimated_accuracy: float | None
    heldout_accuracy: float | None
    windows: tuple[WindowEstimate, ...] = ()

    @property
    def heldout_estimate_error(self) -> float | None:
        if self.heldout_estimated_accuracy is None or self.heldout_accuracy is None:
            return None
        return self.heldout_estimated_accuracy - self.heldout_accuracy

    def to_dict(self) -> dict:
        return {
            "calibration_run": self.calibration_run,
            "calibration": self.calibration,
            "heldout_estimated_accuracy": self.heldout_estimated_accuracy,
            "heldout_accuracy": self.heldout_accuracy,
            "heldout_estimate_error": self.heldout_estimate_error,
            "windows": [w.to_dict() for w in self.windows],
        }


def _figure(doc: Mapping, key: str) -> float | None:
    value = doc.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ReevalReport:
    """One successful run's result in the daemon: read with :meth:`from_dict`, written with :meth:`to_dict`."""

    accuracy: float | None
    macro_f1: float | None
    ece: float | None
    accuracy_drop: float | None
    duration_seconds: float | None
    model_sha256: str | None
    calibration: CalibrationTable | None  # None when the document has no usable table
    document: Mapping[str, Any] = field(repr=False, default_factory=lambda: MappingProxyType({}))
    label_free_estimate: LabelFreeEstimate | None = None

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ReevalReport:
        """Read a result document (``ReevalResult.to_dict()``, as the worker wrote it or the store kept it)."""
        try:
            calibration = CalibrationTable.from_dict(doc["calibration"])
        except (KeyError, TypeError, ValueError):
            calibration = None
        model = doc.get("model")
        sha = model.get("sha256") if isinstance(model, Mapping) else None
        return cls(accuracy=_figure(doc, "accuracy"), macro_f1=_figure(doc, "macro_f1"), ece=_figure(doc, "ece"),
                   accuracy_drop=_figure(doc, "accuracy_drop"), duration_seconds=_figure(doc, "duration_seconds"),
                   model_sha256=sha, calibration=calibration,
                   document=MappingProxyType(copy.deepcopy(dict(doc))))  # fmt: skip

    def with_estimate(self, estimate: LabelFreeEstimate) -> ReevalReport:
        return replace(self, label_free_estimate=estimate)

    def to_dict(self) -> dict:
        """The document as it came, with the daemon's ``label_free_estimate`` when it added one."""
        doc = copy.deepcopy(dict(self.document))
        if self.label_free_estimate is not None:
            doc["label_free_estimate"] = self.label_free_estimate.to_dict()
        return doc
