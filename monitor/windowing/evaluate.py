"""Close a window: run the detectors against the reference and build the result JSON (docs/results.md)."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from detectors.classes import PredictionShift
from detectors.confidence import ConfidenceShift
from detectors.ks import KSDrift
from detectors.latency import latency_summary
from monitor.config import DetectConfig
from monitor.ingest.reference import Profile
from monitor.windowing.accumulator import CONFIDENCE_COL, FIRST_FEATURE_COL, FIXED_POINT, LATENCY_COL, WindowAccumulator

__all__ = ["StreamDetectors", "window_result", "iso_ms", "RESULT_SCHEMA"]

RESULT_SCHEMA = 1


def iso_ms(ts_ms: int | None) -> str | None:
    if ts_ms is None:
        return None
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StreamDetectors:
    """The three detectors of one model, built once from its reference profile (references sorted once)."""

    def __init__(self, profile: Profile, detect: DetectConfig):
        self.profile = profile
        self.input = KSDrift(
            {name: profile.samples[name] for name in profile.feature_names if name in profile.samples},
            alpha=detect.alpha,
            min_effect=detect.min_effect,
            correction=detect.correction,
        )
        self.confidence = (
            ConfidenceShift(
                profile.confidence,
                alpha=detect.alpha,
                min_effect=detect.min_effect,
                low_threshold=detect.low_confidence_threshold,
            )
            if profile.confidence.size
            else None
        )
        self.prediction = (
            PredictionShift(profile.class_counts, alpha=detect.alpha, min_psi=detect.min_psi)
            if profile.class_counts
            else None
        )


def _finite(a: np.ndarray) -> np.ndarray:
    return a[np.isfinite(a)]


def window_result(
    acc: WindowAccumulator,
    *,
    feature_names: tuple[str, ...],
    detectors: StreamDetectors | None,
    min_events: int,
    partial: bool,
    late: int,
    invalid: int,
) -> dict:
    rows = acc.reservoir.rows
    latency = latency_summary(_finite(rows[:, LATENCY_COL]))
    mean_conf = acc.confidence_sum / FIXED_POINT / acc.confidence_n if acc.confidence_n else None
    result = {
        "result_schema": RESULT_SCHEMA,
        "model": acc.model,
        "version": acc.version,
        "window_kind": acc.kind,
        "window_start": iso_ms(acc.start_ms if acc.kind == "time" else acc.first_ts_ms),
        "window_end": iso_ms(acc.end_ms if acc.kind == "time" else acc.last_ts_ms),
        "partial": partial,
        "events": acc.events,
        "invalid": invalid,
        "late": late,
        "sampled": acc.reservoir.sampled,
        "reservoir_size": acc.reservoir.capacity,
        "tested": False,
        "skip_reason": None,
        "latency_ms": latency.to_dict(),
        "confidence": {
            "mean": mean_conf,
            "low_ratio": acc.low_confidence_n / acc.confidence_n if acc.confidence_n else None,
            "entropy_mean": acc.entropy_sum / FIXED_POINT / acc.entropy_n if acc.entropy_n else None,
            "count": acc.confidence_n,
        },
        "predictions": dict(sorted(acc.class_counts.items())),
        "error_rate": acc.errors / acc.events if acc.events else None,
        "accuracy": acc.correct / acc.labelled if acc.labelled else None,
        "labelled": acc.labelled,
        "drift": {"input": None, "confidence": None, "prediction": None},
        "drifted": False,
    }
    if acc.kind == "count":
        result["window_seq"] = acc.seq
    if detectors is None:
        result["skip_reason"] = "no_reference"
        return result
    if acc.events < min_events:
        result["skip_reason"] = "too_few_events"
        return result

    window = {name: rows[:, FIRST_FEATURE_COL + i] for i, name in enumerate(feature_names)}
    drift = result["drift"]
    drift["input"] = detectors.input.test(window).to_dict()
    confidences = _finite(rows[:, CONFIDENCE_COL])
    if detectors.confidence is not None and confidences.size:
        drift["confidence"] = detectors.confidence.test(confidences).to_dict()
    if detectors.prediction is not None and acc.class_counts:
        drift["prediction"] = detectors.prediction.test(dict(acc.class_counts)).to_dict()
    result["tested"] = True
    result["drifted"] = any(bool(d and d["drifted"]) for d in drift.values())
    return result
