"""``metrics.latency_buckets_seconds``: the bounds of ``nlp_prediction_latency_seconds``, validated, used by the sink."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from monitor.config import ConfigError, load_config
from monitor.runtime.wiring import build_sink
from sinks.prometheus import LATENCY_BUCKETS_SECONDS

LAB = {"model": "m", "version": "1"}


def _config(**overrides):
    return load_config(env={}, overrides={"source.kind": "stdin", **overrides})


def _observe(sink, latency_ms) -> None:
    n = len(latency_ms)
    sink.observe_batch("m", "1", classes=Counter({"pos": n}), errors=0, latency_ms=np.array(latency_ms, dtype=float),
                       confidence=np.full(n, 0.9), lengths=np.full(n, 5.0), last_ts_ms=1_764_000_000_000)


def test_the_default_is_the_sinks_default():
    assert _config().metrics.latency_buckets_seconds == LATENCY_BUCKETS_SECONDS


def test_configured_buckets_are_the_histograms_bounds():
    reg = CollectorRegistry()
    sink = build_sink(_config(**{"metrics.latency_buckets_seconds": [0.1, 1, 30, 120]}), reg)
    _observe(sink, [50.0, 2_000.0, 60_000.0, 500_000.0])
    got = {le: reg.get_sample_value("nlp_prediction_latency_seconds_bucket", {**LAB, "le": le})
           for le in ("0.1", "1.0", "30.0", "120.0", "+Inf")}
    assert got == {"0.1": 1, "1.0": 1, "30.0": 2, "120.0": 3, "+Inf": 4}
    assert reg.get_sample_value("nlp_prediction_latency_seconds_bucket", {**LAB, "le": "0.005"}) is None


def test_buckets_from_the_environment():
    c = load_config(env={"NLPMON_SOURCE_KIND": "stdin", "NLPMON_METRICS_LATENCY_BUCKETS_SECONDS": "0.5, 2,8"})
    assert c.metrics.latency_buckets_seconds == (0.5, 2.0, 8.0)


@pytest.mark.parametrize("value, message", [
    ([], "non-empty list of numbers"),
    (["fast"], "list of numbers"),
    ([0.1, 0.05], "increasing order"),
    ([0.1, 0.1], "increasing order"),
    ([0, 1], "positive and finite"),
    ([-1, 1], "positive and finite"),
    ([1, float("inf")], "positive and finite"),
    (0.5, "non-empty list of numbers"),
])
def test_invalid_buckets_name_the_key(value, message):
    with pytest.raises(ConfigError, match=f"metrics.latency_buckets_seconds: .*{message}"):
        _config(**{"metrics.latency_buckets_seconds": value})
