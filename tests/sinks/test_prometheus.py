"""The exporter: fresh registry per test, values read back with get_sample_value."""

from collections import Counter

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from sinks.prometheus import OTHER, PrometheusSink
from tests import factories


@pytest.fixture
def reg():
    return CollectorRegistry()


def observe(sink, model="m", version="1", classes=None, latency_ms=(10.0, 30.0, 600.0), confidence=(0.9, 0.4, np.nan)):
    sink.observe_batch(
        model, version, classes=Counter(classes or {"pos": 2, None: 1}), errors=(classes or {"pos": 2, None: 1}).get(None, 0),
        latency_ms=np.array(latency_ms), confidence=np.array(confidence), lengths=np.array([3.0, 40.0, np.nan]),
        last_ts_ms=1_764_000_000_500,
    )


def test_counters_and_histograms(reg):
    sink = PrometheusSink(reg)
    observe(sink)
    observe(sink)
    assert reg.get_sample_value("nlp_predictions_total", {"model": "m", "version": "1", "prediction_class": "pos"}) == 4
    assert reg.get_sample_value("nlp_prediction_errors_total", {"model": "m", "version": "1"}) == 2
    lab = {"model": "m", "version": "1"}
    assert reg.get_sample_value("nlp_prediction_latency_seconds_count", lab) == 6
    assert reg.get_sample_value("nlp_prediction_latency_seconds_sum", lab) == pytest.approx(2 * 0.64)
    # 10 ms falls in le=0.01 (a value equal to a bound belongs to it); 30 ms in le=0.05; 600 ms in le=0.75
    assert reg.get_sample_value("nlp_prediction_latency_seconds_bucket", {**lab, "le": "0.01"}) == 2
    assert reg.get_sample_value("nlp_prediction_latency_seconds_bucket", {**lab, "le": "0.05"}) == 4
    assert reg.get_sample_value("nlp_prediction_latency_seconds_bucket", {**lab, "le": "0.75"}) == 6
    assert reg.get_sample_value("nlp_prediction_latency_seconds_bucket", {**lab, "le": "+Inf"}) == 6
    # NaN (missing) values are not observed
    assert reg.get_sample_value("nlp_prediction_confidence_count", lab) == 4
    assert reg.get_sample_value("nlp_prediction_confidence_bucket", {**lab, "le": "0.4"}) == 2
    assert reg.get_sample_value("nlp_input_length_tokens_bucket", {**lab, "le": "4.0"}) == 2
    assert reg.get_sample_value("nlp_last_event_timestamp_seconds", lab) == pytest.approx(1_764_000_000.5)


def test_stream_and_class_labels_are_bounded(reg):
    sink = PrometheusSink(reg, max_streams=2, max_classes=2)
    for i in range(4):
        observe(sink, model=f"m{i}", classes={f"c{j}": 1 for j in range(3)})
    assert reg.get_sample_value("nlp_predictions_total", {"model": "m0", "version": "1", "prediction_class": "c1"}) == 1
    assert reg.get_sample_value("nlp_predictions_total", {"model": "m0", "version": "1", "prediction_class": OTHER}) == 1
    # streams m2 and m3 are folded together, with their classes
    assert reg.get_sample_value("nlp_predictions_total", {"model": OTHER, "version": OTHER, "prediction_class": "c0"}) == 2
    assert reg.get_sample_value("nlpmon_label_values_folded_total", {"label": "stream"}) == 2
    text = generate_latest(reg).decode()
    assert "m2" not in text and "m3" not in text


def result(drifted=True):
    return factories.window(
        factories.ms("2026-11-25T10:00:00.000Z"), factories.ms("2026-11-25T10:05:00.000Z"), events=500,
        latency=(12.0, 30.0, 55.0, 80.0), confidence_summary=(0.8, 0.1, 0.4), predictions={"pos": 300, "neg": 200},
        features=[factories.feature("char_length", 0.4, 1e-9, 2e-9, drifted),
                  factories.feature("digit_ratio", 0.01, 0.9, 0.9, False)],
        confidence=factories.confidence_shift(False, 0.05, 0.3), drifted=drifted,
    )  # fmt: skip


def test_window_gauges(reg):
    sink = PrometheusSink(reg)
    sink.window_closed(result())
    lab = {"model": "m", "version": "1"}
    g = reg.get_sample_value
    assert g("nlp_window_events", lab) == 500
    assert g("nlp_window_end_timestamp_seconds", lab) == pytest.approx(1_795_601_100.0)
    assert g("nlp_window_latency_seconds", {**lab, "stat": "p99"}) == pytest.approx(0.055)
    assert g("nlp_window_latency_seconds", {**lab, "stat": "max"}) == pytest.approx(0.080)
    assert g("nlp_window_latency_seconds", {**lab, "quantile": "0.99"}) is None
    assert g("nlp_window_confidence_mean", lab) == 0.8
    assert g("nlp_window_low_confidence_ratio", lab) == 0.1
    assert g("nlp_window_class_ratio", {**lab, "prediction_class": "pos"}) == pytest.approx(0.6)
    assert g("nlp_window_accuracy_ratio", lab) is None  # no labels: no sample rather than a fake 0
    d = {**lab, "detector": "input"}
    assert g("nlp_drift_statistic", {**d, "feature": "char_length"}) == 0.4
    assert g("nlp_drift_p_value", {**d, "feature": "char_length"}) == 2e-9
    assert g("nlp_drift_detected", {**d, "feature": "char_length"}) == 1
    assert g("nlp_drift_detected", {**d, "feature": "digit_ratio"}) == 0
    assert g("nlp_drift_detector_detected", d) == 1
    assert g("nlp_drift_detector_detected", {**lab, "detector": "confidence"}) == 0
    assert g("nlp_drift_detected", {**d, "feature": "__any__"}) is None  # the roll-up has its own family
    assert g("nlp_window_drifted", lab) == 1
    assert g("nlp_windows_closed_total", lab) == 1 and g("nlp_windows_tested_total", lab) == 1
    sink.window_closed(result(drifted=False))
    assert g("nlp_window_drifted", lab) == 0 and g("nlp_windows_closed_total", lab) == 2


def test_daemon_counters_and_gauges(reg):
    sink = PrometheusSink(reg, build_version="9.9")
    sink.preset_reasons(["malformed_json", "wrong_type"])
    sink.count_records(10, 7)
    sink.count_invalid("wrong_type", 3)
    sink.count_late("m", "1", 2)
    sink.set_gauge("nlpmon_kafka_connected", "broker reachable", 1)
    sink.set_gauge("nlpmon_consumer_lag", "lag", 42, topic="t", partition="0")
    g = reg.get_sample_value
    assert g("nlpmon_events_consumed_total") == 10 and g("nlpmon_events_valid_total") == 7
    assert g("nlpmon_events_invalid_total", {"reason": "wrong_type"}) == 3
    assert g("nlpmon_events_invalid_total", {"reason": "malformed_json"}) == 0  # preset: 0, not absent
    assert g("nlpmon_events_late_total", {"model": "m", "version": "1"}) == 2
    assert g("nlpmon_kafka_connected") == 1
    assert g("nlpmon_consumer_lag", {"topic": "t", "partition": "0"}) == 42
    assert g("nlpmon_build_info", {"nlpmon_version": "9.9"}) == 1
    assert g("nlpmon_up") is None  # Prometheus' own `up` says it


def test_a_count_kept_elsewhere_is_exported_as_a_counter(reg):
    sink = PrometheusSink(reg)
    sink.set_counter("nlpmon_embedding_encoder_failures", "Sampled texts the encoder failed on.", 3)
    sink.set_counter("nlpmon_embedding_encoder_failures", "Sampled texts the encoder failed on.", 5)
    assert reg.get_sample_value("nlpmon_embedding_encoder_failures_total") == 5
    assert b"# TYPE nlpmon_embedding_encoder_failures_total counter" in generate_latest(reg)
    with pytest.raises(ValueError, match="without _total"):
        sink.set_counter("nlpmon_x_total", "x", 1)


def test_registry_is_explicit():
    from prometheus_client import REGISTRY

    before = set(REGISTRY._names_to_collectors)
    PrometheusSink(CollectorRegistry())
    assert set(REGISTRY._names_to_collectors) == before
