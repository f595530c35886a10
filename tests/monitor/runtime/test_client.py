"""PredictionLogger against the real broker: valid keyed events arrive; and with the broker unreachable or
frozen, the serving path never raises, drops are counted, and close() keeps to its timeout."""

from __future__ import annotations

import socket
import time
from collections import defaultdict
from datetime import datetime, timezone

import numpy as np
import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from monitor.client import LoggerStats, PredictionLogger
from monitor.ingest.events import decode_event

pytestmark = pytest.mark.integration


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        # Anything beyond `expected` would be a duplicate: give it a moment to show up.
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


@pytest.fixture
def closed_port() -> str:
    """A loopback address nothing listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"


def test_events_arrive_valid_and_keyed_by_model(kafka_broker):
    topic = kafka_broker.new_topic(partitions=3)
    ts = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)
    with PredictionLogger(kafka_broker.bootstrap, topic, model="sentiment", version="3") as sentiment, \
            PredictionLogger(kafka_broker.bootstrap, topic, model="toxicity") as toxicity:
        for i in range(40):
            assert sentiment.log(prediction="positive", probabilities={"positive": 0.9, "negative": 0.1},
                                 latency_ms=np.float32(12.5), text=f"great phone {i}", request_id=f"r-{i}", ts=ts)
            assert toxicity.log(prediction="0", probabilities=[np.float64(0.7), 0.3], classes=["0", "1"],
                                confidence=0.7, label="1", features={"char_length": np.int64(42)}, variant="b",
                                embedding=np.array([0.25, -1.5, 3.0], dtype=np.float32))
        assert toxicity.log(error="TimeoutError", latency_ms=1000)
        assert sentiment.flush(30) and toxicity.flush(30)
        assert sentiment.stats == LoggerStats(sent=40, dropped_buffer_full=0, dropped_on_close=0, send_errors=0,
                                              invalid=0, buffered=0, in_flight=0)
        assert toxicity.stats.sent == 41

    records = consume_all(kafka_broker.bootstrap, topic, 81)
    assert len(records) == 81
    partitions = defaultdict(set)
    for r in records:
        event = decode_event(r.value)  # the daemon's decoder accepts every event
        assert r.key == event.model.encode()
        partitions[r.key].add(r.partition)
    assert {k: len(v) for k, v in partitions.items()} == {b"sentiment": 1, b"toxicity": 1}

    by_model = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_model[r.key].append(orjson.loads(r.value))
    first = by_model[b"sentiment"][0]
    assert first == {"schema": 1, "ts": int(ts.timestamp() * 1000), "model": "sentiment", "version": "3",
                     "prediction": "positive", "probabilities": {"positive": 0.9, "negative": 0.1},
                     "latency_ms": 12.5, "text": "great phone 0", "request_id": "r-0"}
    # One partition per model keeps a stream in order.
    assert [e["request_id"] for e in by_model[b"sentiment"]] == [f"r-{i}" for i in range(40)]
    tox = by_model[b"toxicity"]
    assert tox[0]["features"] == {"char_length": 42.0} and "version" not in tox[0]
    assert tox[0]["embedding"] == [0.25, -1.5, 3.0]  # a numpy array, as the served model returns it
    assert tox[-1]["error"] == "TimeoutError" and "prediction" not in tox[-1]


@pytest.mark.parametrize("call", [
    dict(),                                                        # neither prediction nor error
    dict(prediction=1),                                            # class names are strings
    dict(prediction="a", probabilities={"a": 0.5, "b": 0.1}),      # not normalised
    dict(prediction="a", probabilities={0: 1.0}),                  # non-string class key
    dict(prediction="a", probabilities=[0.5, 0.5]),                # a list needs classes
    dict(prediction="a", latency_ms=-1),                           # negative latency
    dict(prediction="a", latency_ms="12"),                         # a string is not a number
    dict(prediction="a", confidence=float("nan")),                 # not finite
    dict(prediction="a", ts=datetime(2026, 1, 1)),                 # naive datetime
    dict(prediction="a", ts="yesterday"),                          # not RFC 3339
    dict(prediction="a", text="x" * 10_001),                       # longer than max_text_chars
    dict(prediction="a", features={"f": object()}),                # not serializable
    dict(prediction="a", segment="x" * 65),                        # segment longer than 64 characters
    dict(prediction="a", embedding=[0.5, float("inf")]),           # embedding not finite
    dict(prediction="a", embedding=[]),                            # embedding empty
])
def test_invalid_calls_are_counted_never_raised(closed_port, call):
    logger = PredictionLogger(closed_port, "predictions", model="m")
    try:
        assert logger.log(**call) is False
        assert logger.stats.invalid == 1
        assert logger.stats.buffered == 0
    finally:
        logger.close(timeout=1)


def test_unreachable_broker_never_raises_and_counts_drops(closed_port):
    # Constructing does not connect: a down broker at startup is no error.
    logger = PredictionLogger(closed_port, "predictions", model="m", buffer_size=5)
    accepted = [logger.log(prediction="a", latency_ms=1.0) for _ in range(50)]
    # Nothing can be sent, so the buffer holds exactly its size; everything after it is dropped and counted.
    assert accepted == [True] * 5 + [False] * 45
    stats = logger.stats
    assert (stats.buffered, stats.dropped_buffer_full, stats.sent, stats.invalid) == (5, 45, 0, 0)
    assert logger.flush(timeout=0.2) is False

    started = time.monotonic()
    assert logger.close(timeout=1.0) is False
    assert time.monotonic() - started < 1.0 + 0.5
    stats = logger.stats
    assert (stats.buffered, stats.dropped_on_close) == (0, 5)
    # After close, events are refused and counted, still without raising.
    assert logger.log(prediction="a") is False
    assert logger.stats.dropped_on_close == 6
    assert logger.close(timeout=0.1) is False  # idempotent


def test_close_without_events_returns_at_once(closed_port):
    logger = PredictionLogger(closed_port, "predictions", model="m")
    started = time.monotonic()
    assert logger.close(timeout=5.0) is True
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_every_compression_type_delivers(kafka_broker, codec):
    topic = kafka_broker.new_topic()
    with PredictionLogger(kafka_broker.bootstrap, topic, model="m", compression_type=codec) as logger:
        for i in range(30):
            assert logger.log(prediction="p", latency_ms=1.0, text=f"text {i} " * 20)
        assert logger.flush(30)
        assert logger.stats.sent == 30 and logger.stats.send_errors == 0
    assert [orjson.loads(r.value)["text"] for r in consume_all(kafka_broker.bootstrap, topic, 30)] == [
        f"text {i} " * 20 for i in range(30)]


def test_compression_type_default_and_validation(closed_port, monkeypatch):
    from monitor.client import logger as logger_module

    assert PredictionLogger(closed_port, "p", model="m").compression_type == "zstd"
    with pytest.raises(ValueError, match="compression_type must be one of"):
        PredictionLogger(closed_port, "p", model="m", compression_type="brotli")
    with pytest.raises(ValueError, match="compression has its own parameter"):
        PredictionLogger(closed_port, "p", model="m", producer_config={"compression_type": "gzip"})
    monkeypatch.setitem(logger_module._CODECS, "snappy", lambda: False)  # as without python-snappy installed
    with pytest.raises(ValueError, match="finds no library"):
        PredictionLogger(closed_port, "p", model="m", compression_type="snappy")


def test_bad_settings_are_refused_at_construction(closed_port):
    with pytest.raises(ValueError, match="unknown KafkaProducer settings"):
        PredictionLogger(closed_port, "p", model="m", producer_config={"lingr_ms": 5})
    with pytest.raises(ValueError, match="must not set"):
        PredictionLogger(closed_port, "p", model="m", producer_config={"value_serializer": str.encode})
    with pytest.raises(ValueError):
        PredictionLogger(closed_port, "p", model="", buffer_size=10)
    with pytest.raises(ValueError):
        PredictionLogger(closed_port, "p", model="m", buffer_size=0)


def test_events_buffered_while_the_broker_is_frozen_are_delivered_after(private_kafka_broker):
    broker = private_kafka_broker
    topic = broker.new_topic(partitions=1)
    logger = PredictionLogger(broker.bootstrap, topic, model="m", producer_config={"request_timeout_ms": 3000})
    try:
        assert logger.log(prediction="before")
        assert logger.flush(30)
        with broker.paused():
            assert all(logger.log(prediction=f"during-{i}") for i in range(20))
            assert logger.flush(timeout=1.0) is False
        assert logger.flush(timeout=60)
        assert logger.stats.sent == 21 and logger.stats.send_errors == 0
    finally:
        logger.close(timeout=5)
    predictions = [orjson.loads(r.value)["prediction"] for r in consume_all(broker.bootstrap, topic, 21)]
    assert predictions == ["before"] + [f"during-{i}" for i in range(20)]


def test_close_keeps_to_its_timeout_when_the_broker_is_frozen(private_kafka_broker):
    broker = private_kafka_broker
    topic = broker.new_topic(partitions=1)
    logger = PredictionLogger(broker.bootstrap, topic, model="m")
    assert logger.log(prediction="before") and logger.flush(30)
    with broker.paused():
        accepted = sum(logger.log(prediction="during") for _ in range(100))
        started = time.monotonic()
        assert logger.close(timeout=2.0) is False
        assert time.monotonic() - started < 2.0 + 1.0
    s = logger.stats
    # Every accepted event is accounted for exactly once.
    assert s.sent + s.send_errors + s.dropped_on_close + s.in_flight + s.buffered == 1 + accepted
