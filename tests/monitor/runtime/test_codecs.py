"""Whatever the serving app produces with: every compression codec, from a real librdkafka producer.

The same prediction events (with a null key, a tombstone, an empty value and headers among them) go to one
topic per codec: from confluent-kafka (librdkafka) with compression none/gzip/snappy/lz4/zstd, and from
kafka-python uncompressed as the reference. One daemon (``nlpmon run``, a subprocess) consumes all six
topics; each topic carries its own model name, so each has its own stored windows, and these must equal the
reference's window for window.
"""

from __future__ import annotations

import json
import os
import urllib.request

import pytest
from kafka import KafkaProducer

from monitor.devkit.synth.traffic import generate_events

from .harness import DaemonProcess, all_results, caught_up, wait_until, write_config

pytestmark = pytest.mark.integration
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
HEADERS = [("trace-id", b"4bf92f3577b34da6"), ("empty", b"")]


def _confluent_kafka():
    try:
        import confluent_kafka
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"confluent-kafka is not installed on CI: {exc}", pytrace=False)
        pytest.skip(f"confluent-kafka is not installed ({exc}); pip install -e '.[test]'")
    return confluent_kafka


def _records(model: str) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) pairs: 400 events of ``model`` over ~100 s of event time, and three odd records."""
    out: list[tuple[bytes | None, bytes | None]] = [
        (model.encode(), json.dumps(dict(e, model=model)).encode())
        for e in generate_events(400, seed=21, rate_per_s=4, drift_after=200)
    ]
    out[10] = (None, out[10][1])  # a valid event without a key
    out.insert(50, (model.encode(), None))  # a tombstone
    out.insert(100, (model.encode(), b""))  # an empty value
    return out


def _produce_librdkafka(bootstrap: str, topic: str, records, codec: str) -> int:
    ck = _confluent_kafka()
    # Small batches: many compressed batches per topic, not one.
    producer = ck.Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 20,
                            "batch.num.messages": 40, "enable.idempotence": False})
    errors: list = []
    for key, value in records:
        producer.produce(topic, key=key, value=value, headers=HEADERS,
                         on_delivery=lambda err, msg: errors.append(err) if err else None)
        producer.poll(0)
    assert producer.flush(30) == 0 and not errors, errors
    return len(records)


def _produce_kafka_python(bootstrap: str, topic: str, records) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)  # no compression: the reference
    futures = [producer.send(topic, key=k, value=v, headers=HEADERS) for k, v in records]
    producer.flush(30)
    for f in futures:
        f.get(timeout=30)
    producer.close()
    return len(records)


def _without_model(results: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "model"} for r in results]


def _profile_for(profile_path, model: str, out) -> str:
    data = json.loads(profile_path.read_text())
    data["model"] = model
    out.write_text(json.dumps(data))
    return str(out)


def _metric(body: str, line_start: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(line_start))


def test_every_codec_from_librdkafka_stores_the_windows_of_uncompressed_kafka_python(kafka_broker, profile, tmp_path):
    _confluent_kafka()
    topics = {}  # name of the stream -> topic
    ends = {}
    ref = kafka_broker.new_topic(prefix="codec-ref")
    topics["ref"] = ref
    ends[ref] = _produce_kafka_python(kafka_broker.bootstrap, ref, _records("m-ref"))
    for codec in CODECS:
        topic = kafka_broker.new_topic(prefix=f"codec-{codec}")
        topics[codec] = topic
        ends[topic] = _produce_librdkafka(kafka_broker.bootstrap, topic, _records(f"m-{codec}"), codec)

    store = f"sqlite:///{tmp_path / 'codecs.db'}"
    profiles = [_profile_for(profile, f"m-{name}", tmp_path / f"profile-{name}.json") for name in topics]
    cfg = write_config(tmp_path / "c.toml", bootstrap=kafka_broker.bootstrap, topic=ref, group="codecs",
                       store_url=store, profile=None,
                       extra="[reference]\npaths = [" + ", ".join(f'"{p}"' for p in profiles) + "]\n")
    cfg.write_text(cfg.read_text().replace(f'topics = ["{ref}"]', "topics = [" + ", ".join(f'"{t}"' for t in topics.values()) + "]"))
    with DaemonProcess(cfg, tmp_path / "c.log") as d:
        wait_until(lambda: all(caught_up(store, "codecs", t, {0: n}) for t, n in ends.items()), 120,
                   "the daemon to checkpoint every topic", d)
        port = next(e["url"].rsplit(":", 1)[1].split("/")[0] for e in d.logs() if e.get("msg") == "serving metrics")
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert d.stop() == 0, d.log_tail()
    assert not [e for e in d.logs() if e.get("levelname") == "ERROR" or "fetch error" in str(e.get("msg"))]

    # Every record of every topic was read: 403 per topic, the tombstone and the empty value rejected.
    assert _metric(body, "nlpmon_events_consumed_total") == sum(ends.values())
    assert _metric(body, "nlpmon_events_valid_total") == 400 * len(topics)
    assert _metric(body, "nlpmon_events_invalid_total") == 2 * len(topics)
    assert _metric(body, 'nlpmon_fetch_errors_total{reason="unsupported_codec"}') == 0

    expected = _without_model(all_results(store, ["m-ref"]))
    assert len(expected) >= 3 and any(r["tested"] for r in expected)  # closed windows (the open one is saved)
    for codec in CODECS:
        assert _without_model(all_results(store, [f"m-{codec}"])) == expected, codec
