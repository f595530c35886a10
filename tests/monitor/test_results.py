"""WindowResult.to_dict is the documented window-result JSON (docs/results.md): keys, order, values."""

from __future__ import annotations

import json

from monitor.config import load_config
from monitor.pipeline import Pipeline, Record
from monitor.results import WindowResult, iso_ms
from tests import factories

T0 = 1_764_000_000_000

DOCUMENTED_KEYS = ["result_schema", "model", "version", "window_kind", "window_start", "window_end", "partial", "events",
                   "invalid", "late", "sampled", "reservoir_size", "tested", "skip_reason", "latency_ms", "confidence",
                   "predictions", "error_rate", "accuracy", "labelled", "drift", "drifted"]


def test_time_window_json_has_the_documented_keys_in_order():
    r = factories.window(T0, T0 + 300_000, features=[factories.feature("char_length", 0.31, 1.2e-40, 9.6e-40, True)],
                         confidence=factories.confidence_shift(False, 0.04, 0.2))
    d = r.to_dict()
    assert list(d) == DOCUMENTED_KEYS
    assert d["window_start"] == "2025-11-24T16:00:00.000Z" == iso_ms(T0) and d["window_end"] == "2025-11-24T16:05:00.000Z"
    assert list(d["latency_ms"]) == ["p50", "p95", "p99", "max", "count"]
    assert list(d["confidence"]) == ["mean", "low_ratio", "entropy_mean", "count"]
    assert list(d["drift"]) == ["input", "confidence", "prediction", "probabilities", "embedding"]
    assert d["drift"]["prediction"] is None and d["drift"]["probabilities"] is None and d["drift"]["embedding"] is None
    assert list(d["drift"]["input"]) == ["drifted", "correction", "alpha", "min_effect", "features"]
    assert list(d["drift"]["input"]["features"]["char_length"]) == [
        "statistic", "p_value", "p_value_adjusted", "threshold", "min_effect", "drifted", "window_n", "reference_n"]
    assert list(d["drift"]["confidence"])[:8] == ["drifted", "statistic", "p_value", "threshold", "min_effect",
                                                  "mean_delta", "reference_mean", "low_ratio_delta"]
    assert d["drift"]["confidence"]["mean_delta"] is None  # NaN in the object, null in the JSON
    assert d["drifted"] is True
    json.dumps(d, allow_nan=False)


def test_count_window_json_ends_with_window_seq():
    d = factories.window(T0, T0 + 5, kind="count", seq=3).to_dict()
    assert list(d) == DOCUMENTED_KEYS + ["window_seq"] and d["window_seq"] == 3


def test_pipeline_result_keeps_ms_and_detector_objects():
    cfg = load_config(env={}, overrides={"source.kind": "stdin", "window.size_seconds": 60, "window.min_events": 1,
                                         "window.max_future_seconds": 1e9})
    p = Pipeline(cfg)
    event = {"ts": T0 + 1, "model": "m", "version": "1", "prediction": "pos", "probabilities": {"pos": 0.8, "neg": 0.2},
             "latency_ms": 10.0, "text": "a few words"}
    (r,) = p.flush().windows if not p.process([Record(json.dumps(event).encode())]).windows else ()
    assert isinstance(r, WindowResult) and r.window_start_ms == T0 and r.window_end_ms == T0 + 60_000
    assert r.skip_reason == "no_reference" and r.drift.input is None and r.to_dict()["drift"]["input"] is None
