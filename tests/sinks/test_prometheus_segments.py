"""Per-window series with segments (window.by_segment): the `segment` label, its forgetting, the fold counter."""

import subprocess

from prometheus_client import CollectorRegistry, generate_latest

from sinks.prometheus import PrometheusSink
from tests import factories
from tests.sinks.test_prometheus_lint import _promtool

T0 = factories.ms("2026-11-25T10:00:00Z")


def window(segment, events=100, drifted=False):
    features = [factories.feature("char_length", 0.4 if drifted else 0.01, 1e-9 if drifted else 0.9, 1e-8 if drifted else 0.9,
                                  drifted)]
    return factories.window(T0, T0 + 300_000, segment=segment, events=events, features=features)


def test_segment_less_series_carry_no_segment_label():
    reg = CollectorRegistry()
    PrometheusSink(reg).window_closed(window(None))
    assert b'segment="' not in generate_latest(reg)  # the scrape of a deployment without segments is unchanged
    assert reg.get_sample_value("nlp_window_events", {"model": "m", "version": "1"}) == 100


def test_each_segment_has_its_own_window_series():
    reg = CollectorRegistry()
    sink = PrometheusSink(reg)
    for seg, n, drifted in ((None, 100, False), ("en", 70, False), ("fr", 30, True)):
        sink.window_closed(window(seg, n, drifted))
    g = reg.get_sample_value
    lab = {"model": "m", "version": "1"}
    assert [g("nlp_window_events", {**lab, "segment": s}) for s in ("", "en", "fr")] == [100, 70, 30]
    assert g("nlp_drift_detector_detected", {**lab, "segment": "fr", "detector": "input"}) == 1
    assert g("nlp_drift_detector_detected", {**lab, "segment": "en", "detector": "input"}) == 0
    assert g("nlp_drift_statistic", {**lab, "segment": "fr", "detector": "input", "feature": "char_length"}) == 0.4
    assert g("nlp_windows_closed_total", {**lab, "segment": "en"}) == 1
    # A segment's stream expiring drops its own series only.
    sink.forget_stream("m", "1", segment="fr")
    assert g("nlp_window_events", {**lab, "segment": "fr"}) is None
    assert g("nlp_window_events", {**lab, "segment": "en"}) == 70
    # The (model, version) stream expiring drops every segment's.
    sink.forget_stream("m", "1")
    assert g("nlp_window_events", {**lab, "segment": "en"}) is None


def test_folded_segments_are_counted():
    reg = CollectorRegistry()
    sink = PrometheusSink(reg)
    assert reg.get_sample_value("nlpmon_events_segment_folded_total") == 0
    sink.count_segment_folded(5)
    assert reg.get_sample_value("nlpmon_events_segment_folded_total") == 5


def test_promtool_check_metrics_is_clean_with_segments():
    reg = CollectorRegistry()
    sink = PrometheusSink(reg)
    for seg in (None, "en", "fr"):
        sink.window_closed(window(seg))
    result = subprocess.run([_promtool(), "check", "metrics"], input=generate_latest(reg), capture_output=True, timeout=60)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_the_label_free_estimate_is_per_segment():
    reg = CollectorRegistry()
    sink = PrometheusSink(reg)
    sink.set_estimated_accuracy("m", "1", 0.9)
    assert b'segment="' not in generate_latest(reg)  # segment-less: the series it always was
    sink.set_estimated_accuracy("m", "1", 0.8, segment="en")
    sink.set_estimated_accuracy("m", "1", 0.6, segment="fr")
    g, lab = reg.get_sample_value, {"model": "m", "version": "1"}
    assert [g("nlp_estimated_accuracy_ratio", {**lab, "segment": s}) for s in ("", "en", "fr")] == [0.9, 0.8, 0.6]
    sink.forget_stream("m", "1", segment="fr")
    assert g("nlp_estimated_accuracy_ratio", {**lab, "segment": "fr"}) is None
    assert g("nlp_estimated_accuracy_ratio", {**lab, "segment": "en"}) == 0.8
