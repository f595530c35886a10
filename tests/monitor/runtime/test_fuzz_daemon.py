"""Hostile records on the real broker, through the Kafka sidecar into the store: it never exits, every
record is accounted for (valid + invalid = consumed = records produced), and windows are still tested."""

from __future__ import annotations

import json
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.devkit.synth.hostile import hostile_records

from .harness import DaemonProcess, all_results, caught_up, wait_until, write_config
from .test_fuzz_pipeline import hostile

pytestmark = pytest.mark.integration


def _metrics(d: DaemonProcess) -> dict[str, float]:
    port = next(e["url"].rsplit(":", 1)[1].split("/")[0] for e in d.logs() if e.get("msg") == "serving metrics")
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("nlpmon_events_"):
            name = line.split("{")[0].split(" ")[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(hostile, min_size=1, max_size=30))
def test_hostile_records_through_the_kafka_sidecar(kafka_broker, profile, tmp_path_factory, drawn):
    from kafka import KafkaProducer

    tmp = tmp_path_factory.mktemp("kfuzz")
    topic = kafka_broker.new_topic(partitions=2)
    records = list(hostile_records(4000, seed=7, models=("sentiment",))) + drawn
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, linger_ms=5)
    futures = [producer.send(topic, key=b"sentiment", value=r) for r in records]
    producer.flush(30)
    ends: dict[int, int] = {}
    for f in futures:
        md = f.get(timeout=30)
        ends[md.partition] = max(ends.get(md.partition, 0), md.offset + 1)
    producer.close()
    store = f"sqlite:///{tmp / 's.db'}"
    cfg = write_config(tmp / "f.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="fuzz", store_url=store,
                       profile=profile)
    with DaemonProcess(cfg, tmp / "f.log") as d:
        wait_until(lambda: caught_up(store, "fuzz", topic, ends), 90, "every hostile record to be checkpointed", d)
        m = _metrics(d)
        assert d.stop() == 0, d.log_tail()
    assert m["nlpmon_events_consumed_total"] == len(records)
    assert m["nlpmon_events_valid_total"] + m["nlpmon_events_invalid_total"] == len(records)
    assert m["nlpmon_events_invalid_total"] > 1000
    results = all_results(store, ["sentiment"])
    assert any(r["tested"] for r in results), json.dumps([r["skip_reason"] for r in results])
