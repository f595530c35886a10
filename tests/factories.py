"""Typed results for sink tests: the objects the pipeline hands to sinks, built from a few figures."""

from __future__ import annotations

import math
from datetime import datetime

from detectors.ab import SRMResult
from detectors.base import ConfidenceShiftResult, FeatureDrift, InputDriftResult, LatencySummary
from detectors.shadow import ShadowSummary
from monitor.results import (ClassFigures, ConfidenceSummary, DriftVerdicts, ExperimentResult, LabelsResult, ShadowResult,
                             VariantFigures, WindowResult)

NAN = math.nan


def ms(iso: str) -> int:
    return int(round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000))


def feature(name, statistic, p_value, p_value_adjusted, drifted, *, window_n=100, reference_n=1000):
    return FeatureDrift(feature=name, statistic=statistic, p_value=p_value, p_value_adjusted=p_value_adjusted,
                        threshold=0.01, min_effect=0.1, drifted=drifted, window_n=window_n, reference_n=reference_n)


def confidence_shift(drifted, statistic, p_value):
    return ConfidenceShiftResult(drifted=drifted, statistic=statistic, p_value=p_value, threshold=0.01, min_effect=0.1,
                                 mean_delta=NAN, reference_mean=NAN, low_ratio_delta=NAN, mean=NAN, low_ratio=NAN,
                                 reference_low_ratio=NAN, low_threshold=0.5, n=0, reference_n=0)


def window(start_ms, end_ms, *, model="m", version="1", kind="time", seq=None, events=100, partial=False,
           drifted=None, features=(), confidence=None, prediction=None, latency=(12.5, 30.0, 55.0, 80.0),
           confidence_summary=(0.8, 0.1, 0.4), predictions=None, error_rate=0.0, accuracy=None, segment=None):
    """A tested window; ``drifted`` defaults to any detector's verdict."""
    drift = DriftVerdicts(
        input=InputDriftResult(drifted=any(f.drifted for f in features), correction="bh", alpha=0.01, min_effect=0.1,
                               features=tuple(features)),
        confidence=confidence, prediction=prediction,
    )  # fmt: skip
    return WindowResult(
        model=model, version=version, segment=segment, window_kind=kind, window_start_ms=start_ms, window_end_ms=end_ms,
        partial=partial, events=events, invalid=0, late=0, sampled=False, reservoir_size=10_000, tested=True,
        skip_reason=None, latency_ms=LatencySummary(*latency, count=events),
        confidence=ConfidenceSummary(*confidence_summary, count=events),
        predictions=predictions if predictions is not None else {"negative": events - events // 2, "positive": events // 2},
        error_rate=error_rate, accuracy=accuracy, labelled=0, drift=drift,
        drifted=drift.any if drifted is None else drifted, window_seq=seq,
    )  # fmt: skip


def experiment(start_ms, *, experiment="exp", model="m", samples=100, mismatch=False, partial=False):
    """An experiment result of one variant with ``samples`` events and no comparison."""
    srm = SRMResult(variants=("a",), observed=(samples,), expected=(float(samples),), intended_share=(1.0,),
                    statistic=0.0, dof=0, p_value=1.0, alpha=0.001, mismatch=mismatch, reason="ok", n=samples,
                    unexpected_variants=(), unexpected_n=0)
    variant = VariantFigures(variant="a", intended_share=1.0, samples=samples, window_samples=samples, metric_n=0,
                             metric_mean=NAN, window_metric_n=0, window_metric_mean=NAN)
    return ExperimentResult(experiment=experiment, model=model, metric="accuracy", higher_is_better=True,
                            window_kind="time", window_start_ms=start_ms, window_end_ms=start_ms + 60_000, window_seq=0,
                            partial=partial, late=0, planned_samples=None, variants=(variant,), srm=srm, comparisons=())


def shadow(start_ms, *, model="m", n=10, agreement=0.95):
    """A shadow result of ``n`` pairs with that agreement (``None``: no comparable pairs)."""
    rate = NAN if agreement is None else agreement
    summary = ShadowSummary(
        n=n, compared=n, agreement_rate=rate, min_agreement=0.9, agreement_low=agreement is not None and agreement < 0.9,
        served_errors=0, shadow_errors=0, confidence_n=0, confidence_mean_served=NAN, confidence_mean_shadow=NAN,
        confidence_diff_mean=NAN, ks_statistic=NAN, ks_p_value=NAN, alpha=0.01, confidence_drifted=False, latency_n=0,
        latency_diff_mean_ms=NAN, latency_p95_served_ms=NAN, latency_p95_shadow_ms=NAN, latency_diff_p95_ms=NAN,
    )  # fmt: skip
    return ShadowResult(model=model, window_kind="time", window_start_ms=start_ms, window_end_ms=start_ms + 60_000,
                        window_seq=0, partial=False, late_pairs=0, summary=summary, joins={"joined": n, "pending": 0})


def labels(start_ms, *, model="m", version="1", labelled=40, accuracy=0.9, estimate=0.85, partial=False,
           size_ms=300_000):
    """A labels result (realised accuracy) of a window (5 minutes by default)."""
    return LabelsResult(
        model=model, version=version, window_start_ms=start_ms, window_end_ms=start_ms + size_ms, partial=partial,
        predictions=100, with_request_id=80, labelled=labelled, accuracy=accuracy,
        classes=(ClassFigures("neg", 10, 12, 9, 0.9, 0.75), ClassFigures("pos", 30, 28, 27, 0.9, 27 / 28)),
        duplicates=1, unmatched=80 - labelled, expired=80 - labelled, evicted=0, estimated_accuracy=estimate,
    )  # fmt: skip


def replay_windows(pipeline, events: list[dict], batch: int = 1000) -> list:
    """Feed event dicts to a :class:`~monitor.pipeline.Pipeline` in batches, then flush; the window results."""
    import json

    from monitor.pipeline import Record

    records = [Record(json.dumps(e).encode(), f"l:{i}") for i, e in enumerate(events)]
    out = []
    for lo in range(0, len(records), batch):
        out += pipeline.process(records[lo : lo + batch]).windows
    return out + list(pipeline.flush().windows)
