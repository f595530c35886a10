"""A record batch the daemon cannot read never makes it exit: the real broker holds snappy batches written by
librdkafka while the daemon's snappy library is hidden (what an install without python-snappy meets).

The fault is injected into an in-process :class:`KafkaDaemon` by making kafka-python's codec check report the
library missing; broker, batches, store and HTTP endpoints are real. The other partition keeps flowing, the
stuck one waits at its offset, /readyz is 503 with the reason, the counter counts the retries, ONE error line
is logged; once the library is back the partition resumes and the stored windows equal a fault-free run's.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request

import kafka.codec
import pytest
from kafka import KafkaProducer

from monitor.config import load_config
from monitor.devkit.synth.traffic import generate_events
from monitor.runtime.fetch_errors import FetchFaults, fetch_error_reason
from monitor.runtime.kafka_daemon import KafkaDaemon
from monitor.runtime.shutdown import Shutdown

from .harness import DaemonProcess, all_results, caught_up, committed, http_status, wait_until, write_config
from .test_codecs import _confluent_kafka

pytestmark = pytest.mark.integration


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def nlpmon_log():
    """The daemon's log lines (the "nlpmon" logger does not propagate once the CLI has set logging up)."""
    logger, handler = logging.getLogger("nlpmon"), _Lines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _metric(body: str, line_start: str) -> float | None:
    for line in body.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


def _readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_undecodable_batch_is_survived_visible_and_resumed(kafka_broker, profile, tmp_path, monkeypatch, nlpmon_log):
    ck = _confluent_kafka()
    topic = kafka_broker.new_topic(partitions=2)
    sentiment = [json.dumps(e).encode() for e in generate_events(400, seed=31, rate_per_s=4, drift_after=200)]
    producer = ck.Producer({"bootstrap.servers": kafka_broker.bootstrap, "compression.type": "snappy",
                            "linger.ms": 20, "batch.num.messages": 50})
    for value in sentiment:
        producer.produce(topic, key=b"sentiment", value=value, partition=0)
    assert producer.flush(30) == 0
    intent = [json.dumps(e).encode() for e in generate_events(300, seed=32, rate_per_s=4, model="intent", version="7")]
    plain = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, linger_ms=5)  # uncompressed
    for value in intent:
        plain.send(topic, key=b"intent", value=value, partition=1)
    plain.flush(30)
    plain.close()
    ends = {0: len(sentiment), 1: len(intent)}

    store = f"sqlite:///{tmp_path / 'f.db'}"
    cfg = write_config(tmp_path / "f.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="f", store_url=store,
                       profile=profile)
    cfg.write_text(cfg.read_text().replace("[store]", "fetch_retry_max_seconds = 1\n[store]"))
    monkeypatch.setattr(kafka.codec, "has_snappy", lambda: False)  # as if python-snappy were not installed

    daemon = KafkaDaemon(load_config(cfg, env={}), shutdown=Shutdown())
    result: list = []
    thread = threading.Thread(target=lambda: result.append(daemon.run()), name="daemon-under-test", daemon=True)
    thread.start()
    try:
        # The other partition is consumed and checkpointed all the same; the snappy one waits at offset 0.
        wait_until(lambda: committed(store, "f", topic, 2).get(1) == ends[1], 60, "the uncompressed partition")
        wait_until(lambda: _fetch_failures(daemon) >= 3, 30, "three failed fetches")
        assert thread.is_alive()
        assert committed(store, "f", topic, 2).get(0, 0) == 0  # nothing of the stuck partition skipped
        port = daemon.http_port
        status, body = _readyz(port)
        assert status == 503 and body["ready"] is False
        fault = body["fetch_errors"][f"{topic}/0"]
        assert fault["reason"] == "unsupported_codec" and fault["offset"] == 0 and "snappy" in fault["error"]
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        assert _metric(metrics, 'nlpmon_fetch_errors_total{reason="unsupported_codec"}') >= 3
        assert _metric(metrics, 'nlpmon_fetch_errors_total{reason="corrupt_record"}') == 0.0
        assert _metric(metrics, "nlpmon_ready ") == 0.0
        errors = [m for m in nlpmon_log.messages(logging.ERROR) if m.startswith("fetch error")]
        assert len(errors) == 1, errors  # one line per fault, however many retries

        monkeypatch.undo()  # the library is back (an upgraded image, in real life)
        wait_until(lambda: caught_up(store, "f", topic, ends), 60, "the resumed partition")
        wait_until(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, 30, "ready again")
        assert "fetch recovered" in nlpmon_log.messages(logging.INFO)
    finally:
        daemon.shutdown.should_exit = True
        thread.join(30)
    assert result == [0]

    # The same topic, read by a daemon that never met the fault, stores the same windows.
    ref = f"sqlite:///{tmp_path / 'ref.db'}"
    cfg_ref = write_config(tmp_path / "ref.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="ref",
                           store_url=ref, profile=profile)
    with DaemonProcess(cfg_ref, tmp_path / "ref.log") as d:
        wait_until(lambda: caught_up(ref, "ref", topic, ends), 60, "the reference run", d)
        assert d.stop() == 0
    expected = all_results(ref, ["sentiment", "intent"])
    assert len([r for r in expected if r["model"] == "sentiment"]) >= 3
    assert all_results(store, ["sentiment", "intent"]) == expected


def _fetch_failures(daemon: KafkaDaemon) -> float:
    fault = next(iter(daemon.fetcher.faults.faults.values()), None)
    return fault.failures if fault is not None else 0


def test_fetch_error_reasons_are_bounded():
    from kafka.errors import CorruptRecordError, KafkaConnectionError, UnsupportedCodecError

    assert fetch_error_reason(UnsupportedCodecError("no lz4")) == "unsupported_codec"
    assert fetch_error_reason(CorruptRecordError("crc")) == "corrupt_record"
    try:
        kafka.codec.gzip_decode(b"not gzip at all")
    except Exception as exc:  # raised inside kafka.codec: a codec library's own error
        assert fetch_error_reason(exc) == "decompression_failed"
    else:
        pytest.fail("gzip_decode accepted garbage")
    assert fetch_error_reason(KafkaConnectionError("down")) is None  # not a batch problem: not swallowed
    assert fetch_error_reason(RuntimeError("a bug of ours")) is None


def test_backoff_doubles_up_to_the_cap_and_a_change_is_logged_again():
    faults = FetchFaults(initial_s=0.5, max_s=2.0)
    delays, changes = [], []
    for now in range(5):
        fault, changed = faults.record("t/0", "unsupported_codec", 7, "e", now=float(now))
        delays.append(fault.delay_s)
        changes.append(changed)
    assert delays == [0.5, 1.0, 2.0, 2.0, 2.0] and changes == [True, False, False, False, False]
    assert faults.waiting("t/0") and faults.due(4.0) == [] and faults.due(6.0) == ["t/0"]
    assert not faults.waiting("t/0")  # resumed: the next fetch decides
    _, changed = faults.record("t/0", "unsupported_codec", 9, "e", now=7.0)  # moved on to another bad batch
    assert changed
    with pytest.raises(ValueError):
        FetchFaults(initial_s=0, max_s=1)
