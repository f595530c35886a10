"""`promtool check metrics` on a scrape carrying every family (windows, drift, re-evaluation, experiments,
shadow, daemon, process/platform), built by the daemons' own wiring (monitor.runtime.wiring.build_sink).

The lint is clean (issue 11). KNOWN_PROBLEMS stays as the place to list a finding that must wait for a rename
of its consumers (alert source and tests, dashboards, docs): the test fails on any finding not listed, and on a
listed one that disappeared, so the list only shrinks.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from monitor.config import Config
from monitor.runtime.wiring import build_sink
from tests import factories

pytestmark = pytest.mark.integration

KNOWN_PROBLEMS: set[str] = set()


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is not installed (Debian: apt-get install -y prometheus)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)
    return path


def full_scrape() -> tuple[CollectorRegistry, bytes]:
    registry = CollectorRegistry()
    sink = build_sink(Config(), registry)
    t0 = factories.ms("2026-11-25T10:00:00Z")
    sink.window_closed(factories.window(
        t0, t0 + 300_000, accuracy=0.9,
        features=[factories.feature("char_length", 0.3, 1e-6, 1e-5, True),
                  factories.feature("empty", 0.05, 1e-4, 1e-3, True)],
        confidence=factories.confidence_shift(True, 0.2, 1e-4)))  # fmt: skip
    sink.set_reeval("m", "1", "heldout", {"nlp_reeval_accuracy_ratio": 0.91, "nlp_reeval_f1": 0.9, "nlp_reeval_ece": 0.03,
                                          "nlp_reeval_accuracy_drop": 0.01, "nlp_reeval_duration_seconds": 2.0,
                                          "nlp_reeval_last_run_timestamp_seconds": t0 / 1000})
    sink.count_reeval_run("success", 1)
    sink.set_estimated_accuracy("m", "1", 0.88)
    sink.experiment_closed(factories.experiment(t0))
    sink.shadow_closed(factories.shadow(t0))
    sink.count_shadow_joins({"joined": 10})
    sink.labels_closed(factories.labels(t0))
    sink.count_label_joins({"matched": 40, "expired": 40})
    sink.set_label_pending(12)
    sink.count_records(100, 99)
    sink.count_invalid("malformed_json")
    sink.count_dead_letter()
    sink.count_fetch_error("corrupt_record", 0)
    sink.set_gauge("nlpmon_kafka_connected", "1 while the group coordinator is reachable.", 1.0)
    sink.set_counter("nlpmon_embedding_encoder_failures", "Sampled texts the [embedding] encoder failed on.", 2.0)
    sink.set_gauge("nlpmon_consumer_lag", "Records not yet consumed.", 3.0, topic="t", partition="0")
    return registry, generate_latest(registry)


def test_the_scrape_carries_every_family():
    registry, text = full_scrape()
    names = {m.name for m in registry.collect()}
    for expected in ("nlp_predictions", "nlp_window_events", "nlp_drift_statistic", "nlp_reeval_accuracy_ratio",
                     "nlp_experiment_samples", "nlp_shadow_pairs", "nlp_realised_accuracy_ratio", "nlpmon_events_consumed", "nlpmon_kafka_connected",
                     "nlpmon_embedding_encoder_failures", "nlpmon_build_info",
                     "process_cpu_seconds", "python_info", "python_gc_objects_collected"):
        assert expected in names, f"{expected} missing from the scrape"


def test_promtool_check_metrics_finds_only_the_known_problems():
    _, text = full_scrape()
    result = subprocess.run([_promtool(), "check", "metrics"], input=text, capture_output=True, timeout=60)
    findings = {line.strip() for line in (result.stdout + result.stderr).decode().splitlines() if line.strip()}
    assert findings == KNOWN_PROBLEMS, f"promtool check metrics (rc {result.returncode}) reported: {sorted(findings)}"
    assert (result.returncode == 0) == (not KNOWN_PROBLEMS)
