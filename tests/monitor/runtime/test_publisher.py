"""The output/dead-letter publisher (runtime/publisher.py): never raises, never blocks, bounded, retried."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from monitor.runtime import publisher as pub
from monitor.runtime.publisher import Outgoing, Publisher
from sinks.prometheus import PrometheusSink


class _Future:
    def __init__(self, error: Exception | None = None, done: bool = True):
        self.is_done, self.exception = done, error

    def failed(self) -> bool:
        return self.exception is not None


class _Producer:
    """Refuses every send while ``refusing`` is set (as kafka-python does when no metadata comes within
    max_block_ms); ``fail_futures``: sends are taken and fail later (a delivery timeout)."""

    def __init__(self):
        self.refusing, self.fail_futures, self.sent, self.closed = False, False, [], False

    def send(self, topic, value=None, key=None, headers=None):
        if self.refusing:
            from kafka.errors import KafkaTimeoutError

            raise KafkaTimeoutError("Failed to update metadata after 0.2 secs.")
        if self.fail_futures:
            return _Future(RuntimeError("delivery timed out"))
        self.sent.append((topic, key, value))
        return _Future()

    def flush(self, timeout=None):
        pass

    def close(self, timeout=None):
        self.closed = True


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _setup(connect=None):
    registry, clock, producer = CollectorRegistry(), _Clock(), _Producer()
    p = Publisher(PrometheusSink(registry), connect=connect or (lambda: producer), clock=clock)
    return p, producer, clock, registry


def _out(i: int, kind: str = "output") -> Outgoing:
    return Outgoing(kind, "out" if kind == "output" else "dlq", f"v{i}".encode(), key=b"m")


def _metric(registry, name: str, kind: str) -> float:
    return registry.get_sample_value(name, {"topic_kind": kind})


def test_sends_in_order():
    p, producer, _, registry = _setup()
    p.add(_out(i) for i in range(3))
    p.pump()
    assert [v for _, _, v in producer.sent] == [b"v0", b"v1", b"v2"]
    p.pump()  # acknowledgements collected
    assert not p.in_flight and not p.unsent and p.degraded() == {}
    assert _metric(registry, "nlpmon_publish_errors_total", "output") == 0


def test_a_refusing_broker_is_counted_said_once_and_retried_with_backoff(caplog):
    caplog.set_level(logging.INFO, logger="nlpmon")
    p, producer, clock, registry = _setup()
    producer.refusing = True
    p.add(_out(i) for i in range(3))
    p.pump()  # raises nothing
    assert p.degraded() == {"output_topic": "KafkaTimeoutError: Failed to update metadata after 0.2 secs."}
    assert _metric(registry, "nlpmon_publish_errors_total", "output") == 1
    assert _metric(registry, "nlpmon_publish_unsent", "output") == 3
    p.pump()  # inside the backoff: no try
    assert _metric(registry, "nlpmon_publish_errors_total", "output") == 1
    for _ in range(3):
        clock.now = p.retry_at
        p.pump()
    assert _metric(registry, "nlpmon_publish_errors_total", "output") == 4
    assert p.retry_delay == 16 * pub.INITIAL_RETRY_S  # 0.5, 1, 2, 4 s waited: the next wait is 8 s
    assert sum("output topic unavailable" in r.getMessage() for r in caplog.records) == 1
    producer.refusing = False
    clock.now = p.retry_at
    p.pump()
    p.pump()
    assert [v for _, _, v in producer.sent] == [b"v0", b"v1", b"v2"] and p.degraded() == {}
    assert sum("output topic available again" in r.getMessage() for r in caplog.records) == 1
    assert p.retry_delay == pub.INITIAL_RETRY_S


def test_failed_deliveries_go_back_to_the_front():
    p, producer, clock, registry = _setup()
    producer.fail_futures = True
    p.add([_out(0), _out(1)])
    p.pump()
    p.pump()  # both failed: back in the queue, in order
    assert [i.value for i in p.unsent] == [b"v0", b"v1"] and "output_topic" in p.degraded()
    assert _metric(registry, "nlpmon_publish_errors_total", "output") == 2
    producer.fail_futures = False
    clock.now = p.retry_at
    p.add([_out(2)])
    p.pump()
    assert [v for _, _, v in producer.sent] == [b"v0", b"v1", b"v2"]


def test_no_broker_for_the_producer_is_an_error_not_an_exit():
    def connect():
        from monitor.runtime.startup import NotYet

        raise NotYet("no broker answers at 127.0.0.1:9")

    p, _, _, registry = _setup(connect)
    p.add([_out(0), _out(1, "dead_letter")])
    p.pump()
    assert set(p.degraded()) == {"output_topic", "dead_letter_topic"}
    assert _metric(registry, "nlpmon_publish_errors_total", "dead_letter") == 1


def test_the_queue_is_bounded_and_drops_the_oldest(monkeypatch):
    monkeypatch.setattr(pub, "MAX_UNSENT", 5)
    p, producer, clock, registry = _setup()
    producer.refusing = True
    p.add(_out(i) for i in range(8))
    assert [i.value for i in p.unsent] == [b"v3", b"v4", b"v5", b"v6", b"v7"]
    assert _metric(registry, "nlpmon_publish_dropped_total", "output") == 3


def test_close_counts_what_is_left_and_closes_the_producer(caplog):
    p, producer, _, registry = _setup()
    p.add([_out(0)])
    p.pump()
    producer.refusing = True
    p.add([_out(1), _out(2, "dead_letter")])
    p.pump()
    p.close(timeout_s=0.1)
    assert producer.closed and [v for _, _, v in producer.sent] == [b"v0"]
    assert _metric(registry, "nlpmon_publish_dropped_total", "output") == 1
    assert _metric(registry, "nlpmon_publish_dropped_total", "dead_letter") == 1
    assert any("stopped with records not sent" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind", ["output", "dead_letter"])
def test_zero_series_from_the_start(kind):
    _, _, _, registry = _setup()
    assert _metric(registry, "nlpmon_publish_errors_total", kind) == 0
    assert _metric(registry, "nlpmon_publish_dropped_total", kind) == 0
