"""Realised-accuracy gauges and label-join counters (sinks/prometheus/realised.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from sinks.prometheus import LABEL_JOIN_OUTCOMES, PrometheusSink
from tests import factories

T0 = factories.ms("2026-11-25T10:00:00Z")


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def test_absent_until_the_join_reports():
    registry = CollectorRegistry()
    PrometheusSink(registry)
    assert not [m for m in registry.collect() if m.name.startswith(("nlp_realised", "nlpmon_label_join"))]


def test_latest_labels_result_per_stream_and_counters():
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    sink.labels_closed(factories.labels(T0, accuracy=0.8))
    sink.labels_closed(factories.labels(T0 + 300_000, accuracy=0.7, estimate=0.9))
    sink.labels_closed(factories.labels(T0, version="2", labelled=0, accuracy=None, estimate=None))
    assert sample(registry, "nlp_realised_accuracy_ratio", model="m", version="1") == 0.7
    assert sample(registry, "nlp_realised_estimated_accuracy_ratio", model="m", version="1") == 0.9
    assert sample(registry, "nlp_realised_window_start_timestamp_seconds", model="m", version="1") == (T0 + 300_000) / 1000
    assert sample(registry, "nlp_realised_labelled", model="m", version="2") == 0
    # no labelled prediction, no estimate: no sample rather than a made-up value
    assert sample(registry, "nlp_realised_accuracy_ratio", model="m", version="2") is None
    assert sample(registry, "nlp_realised_estimated_accuracy_ratio", model="m", version="2") is None
    sink.count_label_joins({"matched": 3, "late": 1, "nonsense": 5})
    sink.count_label_joins({"matched": 2, "expired": -1})
    sink.set_label_pending(7)
    assert [sample(registry, "nlpmon_label_join_events_total", outcome=o) for o in LABEL_JOIN_OUTCOMES] == [5, 0, 0, 1, 0, 0]
    assert sample(registry, "nlpmon_label_join_pending") == 7


def test_streams_are_bounded():
    registry = CollectorRegistry()
    sink = PrometheusSink(registry, max_streams=2)
    for v in range(5):
        sink.labels_closed(factories.labels(T0, version=str(v), accuracy=v / 10))
    versions = {s.labels["version"] for m in registry.collect() if m.name == "nlp_realised_accuracy_ratio" for s in m.samples}
    assert versions == {"0", "1", "__other__"}
