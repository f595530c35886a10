"""What a report shows, as one plain frozen object built from window result JSON, evidence and a profile.

:class:`ReportData` holds nothing but what the store (or a notebook) already has: the window results of one
stream as their JSON (docs/results.md) with their evidence (``monitor.results.WindowEvidence``), the labels
results, and the reference side taken from a profile once (quantile sketches, embedding points, class mix).
Building one does no I/O; :mod:`monitor.report.load` reads it from a store, and the renderer turns it into HTML.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from detectors.evidence import QUANTILE_GRID, QuantileSketch, quantile_sketch
from monitor.ingest.reference import Profile
from monitor.results import WindowEvidence

__all__ = ["ReportData", "Flag", "flags", "window_ms", "sketch_median", "MAX_REFERENCE_POINTS"]

# The reference side of the embedding scatter: every point would make a page of megabytes for nothing the
# eye can tell apart; an even stride keeps it deterministic.
MAX_REFERENCE_POINTS = 2000
_MEDIAN = QUANTILE_GRID.index(0.5)

Window = tuple[Mapping, WindowEvidence | None]


@dataclass(frozen=True, slots=True)
class Flag:
    """One test of a window result: ``detector`` (input, confidence, prediction, probabilities, embedding),
    ``feature`` ("" for a detector tested as a whole), its statistic, (adjusted) p-value and verdict."""

    detector: str
    feature: str
    statistic: float | None
    p_value: float | None
    drifted: bool

    @property
    def name(self) -> str:
        """What a sentence calls it: the feature, the class, the component, or the detector."""
        return self.feature or self.detector


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportData:
    """The report of one stream over a period (what :func:`monitor.report.render_report` draws).

    ``windows``: (result JSON, evidence or ``None``) of the stream, oldest first; ``focus``: the index of
    the window the overlays, tokens and exemplars describe. ``reference``: the profile's sketches keyed as
    the evidence's (``feature:<name>``, ``confidence``, ``probability:<class>``), empty without a profile.
    ``labels``: labels results (docs/results.md) of the period. ``segments``: the other segments' window
    results of the period, by segment. ``notes``: what the loader chose that a reader should know.
    """

    model: str
    version: str | None = None
    segment: str | None = None
    windows: tuple[Window, ...] = ()
    focus: int | None = None
    reference: Mapping[str, QuantileSketch] = field(default_factory=dict)
    reference_points: tuple[tuple[float, float], ...] = ()
    reference_classes: Mapping[str, int] = field(default_factory=dict)
    reference_note: str = ""
    labels: tuple[Mapping, ...] = ()
    baseline_accuracy: float | None = None
    baseline_note: str = ""
    segments: Mapping[str, tuple[Mapping, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @classmethod
    def build(
        cls, model: str, windows: Iterable[Window], *, profile: Profile | None = None, focus_start: str | None = None,
        reference_note: str = "", **fields,
    ) -> "ReportData":
        """Build the report of ``windows`` against ``profile`` (or the window side only without one).

        ``focus_start``: the ``window_start`` of the window to describe; by default the newest drifted one,
        else the newest. Other keyword arguments are fields of the report as they are.
        """
        ordered = tuple(sorted(((dict(r), e) for r, e in windows), key=lambda w: window_ms(w[0])))
        reference, points, classes = _reference(profile)
        return cls(model=model, windows=ordered, focus=_focus(ordered, focus_start), reference=reference,
                   reference_points=points, reference_classes=classes,
                   reference_note=reference_note if profile is not None else "", **fields)

    @property
    def focus_window(self) -> Window | None:
        return None if self.focus is None else self.windows[self.focus]

    def drift_onset(self) -> Mapping | None:
        """The first window of the run of drifted windows that ends at the focus window (``None``: not drifted)."""
        if self.focus is None or not self.windows[self.focus][0].get("drifted"):
            return None
        i = self.focus
        while i > 0 and self.windows[i - 1][0].get("drifted"):
            i -= 1
        return self.windows[i][0]


def _reference(profile: Profile | None) -> tuple[dict[str, QuantileSketch], tuple, dict[str, int]]:
    if profile is None:
        return {}, (), {}
    sketches = {f"feature:{name}": quantile_sketch(values) for name, values in profile.samples.items()}
    if len(profile.confidence):
        sketches["confidence"] = quantile_sketch(profile.confidence)
    sketches.update({f"probability:{c}": quantile_sketch(v) for c, v in profile.probabilities.items()})
    points: tuple = ()
    ref = profile.embedding_reference
    if ref is not None and ref.ndim == 2 and ref.shape[1] >= 2 and len(ref):
        step = max(1, -(-len(ref) // MAX_REFERENCE_POINTS))
        points = tuple((float(x), float(y)) for x, y in np.asarray(ref[::step, :2], dtype=np.float64))
    return sketches, points, dict(profile.class_counts)


def _focus(windows: Sequence[Window], start: str | None) -> int | None:
    if not windows:
        return None
    if start is not None:
        for i, (r, _) in enumerate(windows):
            if r.get("window_start") == start:
                return i
        raise ValueError(f"no window starting at {start} among the report's windows")
    drifted = [i for i, (r, _) in enumerate(windows) if r.get("drifted")]
    return drifted[-1] if drifted else len(windows) - 1


def window_ms(result: Mapping) -> int:
    """A result's ``window_start`` as epoch milliseconds (0 when it has none)."""
    text = result.get("window_start")
    if not text:
        return 0
    return int(round(datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp() * 1000))


def sketch_median(sketch: QuantileSketch | None) -> float | None:
    """The median a sketch kept (its 50 % grid point), ``None`` for an empty or missing sketch."""
    if sketch is None or not sketch.quantiles:
        return None
    return sketch.quantiles[_MEDIAN]


def flags(result: Mapping) -> list[Flag]:
    """Every test a window result ran, in the order of its JSON (docs/results.md, ``drift``)."""
    drift = result.get("drift") or {}
    out: list[Flag] = []
    for detector, key in (("input", "features"), ("probabilities", "classes"), ("embedding", "components")):
        d = drift.get(detector) or {}
        for name, f in (d.get(key) or {}).items():
            p = f.get("p_value_adjusted", f.get("p_value"))
            out.append(Flag(detector, name, f.get("statistic"), p, bool(f.get("drifted"))))
        multi = d.get("multivariate") if detector == "embedding" else None
        if multi:
            out.append(Flag(detector, "mmd", multi.get("statistic"), multi.get("p_value_adjusted", multi.get("p_value")),
                            bool(multi.get("drifted"))))
    for detector in ("confidence", "prediction"):
        d = drift.get(detector)
        if d:
            out.append(Flag(detector, "", d.get("statistic"), d.get("p_value"), bool(d.get("drifted"))))
    return out
