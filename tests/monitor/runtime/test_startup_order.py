"""Start in any order (docs/kafka.md): the daemon first, the broker or the database later; SIGTERM while waiting.

Each case compares the stored windows with those of a run that started after all the traffic was there.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from monitor.devkit.embedded_broker import free_port, start_tansu
from tests.monitor.runtime.test_daemon import MODELS, _events, _run_to_end

from .harness import DaemonProcess, all_results, caught_up, produce, wait_until, write_config

pytestmark = pytest.mark.integration
LATER_S = 6  # how long the daemon waits alone: enough for the backoff to grow, short for the suite


def _readyz(port: int) -> tuple[int, dict]:
    try:
        r = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
        return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _port(d: DaemonProcess) -> int:
    wait_until(lambda: any(e.get("msg") == "serving metrics" for e in d.logs()), 60, "the metrics server", d)
    url = next(e["url"] for e in d.logs() if e.get("msg") == "serving metrics")
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _msgs(d: DaemonProcess) -> list[str]:
    return [e.get("msg") for e in d.logs()]


def _create_topic(broker, topic: str) -> None:
    # tansu creates a topic on a metadata request for it (a consumer may get there first): both are fine.
    try:
        broker.create_topic(topic, partitions=2)
    except Exception as exc:
        if "TopicAlreadyExists" not in type(exc).__name__:
            raise


def _reference(broker, profile, tmp_path, topic, ends) -> list[dict]:
    store = f"sqlite:///{tmp_path / 'ref.db'}"
    cfg = write_config(tmp_path / "ref.toml", bootstrap=broker.bootstrap, topic=topic, group="ref", store_url=store,
                       profile=profile)
    _run_to_end(cfg, tmp_path / "ref.log", store, "ref", topic, ends)
    return all_results(store, MODELS)


def _stop_timed(d: DaemonProcess) -> tuple[int, float, float]:
    """SIGTERM: the exit code, seconds until the daemon stopped (its last line) and until the process ended."""
    from datetime import datetime

    started, wall = time.monotonic(), time.time()
    code = d.stop(timeout=30)
    ended = time.monotonic() - started
    last = datetime.fromisoformat(d.logs()[-1]["ts"].replace("Z", "+00:00")).timestamp()
    return code, last - wall, ended


def test_broker_starts_later(profile, tmp_path):
    port, topic, events = free_port(), "late-broker", _events(2000, seed=31)
    store = f"sqlite:///{tmp_path / 'd.db'}"
    cfg = write_config(tmp_path / "d.toml", bootstrap=f"127.0.0.1:{port}", topic=topic, group="d", store_url=store,
                       profile=profile)
    with DaemonProcess(cfg, tmp_path / "d.log") as d:
        http = _port(d)
        wait_until(lambda: "waiting for broker" in _msgs(d), 30, "the waiting line", d)
        status, body = _readyz(http)
        assert status == 503 and "waiting for broker" in body["waiting_for"]
        time.sleep(LATER_S)
        assert d.popen.poll() is None and _msgs(d).count("waiting for broker") == 1  # once per state change
        with start_tansu(tmp_path / "broker", port=port) as broker:
            _create_topic(broker, topic)
            ends = produce(broker.bootstrap, topic, events[:1000])  # before the daemon is there, likely
            wait_until(lambda: caught_up(store, "d", topic, ends), 90, "the first half", d)
            ends = produce(broker.bootstrap, topic, events[1000:])
            wait_until(lambda: caught_up(store, "d", topic, ends), 90, "the second half", d)
            assert d.stop() == 0, d.log_tail()
            assert "broker ready" in _msgs(d) and "Traceback" not in d.log.read_text()
            assert all_results(store, MODELS) == _reference(broker, profile, tmp_path, topic, ends)


def test_database_starts_later(kafka_broker, profile, postgres_outage, tmp_path):
    topic, events = kafka_broker.new_topic(partitions=2), _events(2000, seed=32)
    cfg = write_config(tmp_path / "d.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="d",
                       store_url=postgres_outage.url, profile=profile)
    postgres_outage.cut()
    ends = produce(kafka_broker.bootstrap, topic, events[:1000])
    with DaemonProcess(cfg, tmp_path / "d.log") as d:
        http = _port(d)
        wait_until(lambda: "waiting for database" in _msgs(d), 30, "the waiting line", d)
        status, body = _readyz(http)
        assert status == 503 and "waiting for database" in body["waiting_for"] and not body["db_connected"]
        time.sleep(LATER_S)
        assert d.popen.poll() is None and _msgs(d).count("waiting for database") == 1
        postgres_outage.restore()
        wait_until(lambda: caught_up(postgres_outage.url, "d", topic, ends), 90, "the first half", d)
        ends = produce(kafka_broker.bootstrap, topic, events[1000:])
        wait_until(lambda: caught_up(postgres_outage.url, "d", topic, ends), 90, "the second half", d)
        assert d.stop() == 0, d.log_tail()
    msgs = _msgs(d)
    assert "database ready" in msgs and "database reachable again" not in msgs  # first contact: no "again"
    assert all_results(postgres_outage.url, MODELS) == _reference(kafka_broker, profile, tmp_path, topic, ends)


def test_topic_created_later(kafka_broker, profile, tmp_path):
    topic, events = f"late-topic-{time.monotonic_ns()}", _events(1500, seed=33)
    store = f"sqlite:///{tmp_path / 'd.db'}"
    cfg = write_config(tmp_path / "d.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="d", store_url=store,
                       profile=profile)
    with DaemonProcess(cfg, tmp_path / "d.log") as d:
        _port(d)
        time.sleep(3)
        _create_topic(kafka_broker, topic)
        ends = produce(kafka_broker.bootstrap, topic, events)
        wait_until(lambda: caught_up(store, "d", topic, ends), 90, "the records", d)
        assert d.stop() == 0, d.log_tail()
    assert all_results(store, MODELS) == _reference(kafka_broker, profile, tmp_path, topic, ends)


@pytest.mark.parametrize("missing", ["broker", "database", "silent_database"])
def test_sigterm_while_waiting_exits_0_within_2_s(missing, kafka_broker, profile, tmp_path):
    import socket

    # silent_database: a listener that completes the TCP handshake and never answers (packets dropped by a
    # firewall look the same to the driver): one connection try would hang for the whole connect_timeout.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    bootstrap = f"127.0.0.1:{free_port()}" if missing == "broker" else kafka_broker.bootstrap
    store = {"database": "postgresql+psycopg://nobody:x@127.0.0.1:9/none",
             "silent_database": f"postgresql+psycopg://nobody:x@127.0.0.1:{silent.getsockname()[1]}/none"}.get(
        missing, f"sqlite:///{tmp_path / 'd.db'}")
    cfg = write_config(tmp_path / "d.toml", bootstrap=bootstrap, topic="never", group="d", store_url=store, profile=profile)
    with silent, DaemonProcess(cfg, tmp_path / "d.log") as d:
        if missing == "silent_database":  # no "waiting" line before the first try ends: inside it
            _port(d)
        else:
            wait_until(lambda: f"waiting for {missing}" in _msgs(d), 60, "the waiting line", d)
        time.sleep(2.5)  # inside a backoff sleep or a connection try
        code, stopped_s, ended_s = _stop_timed(d)
    # The daemon stops within 2 s of the signal, and the process is gone soon after (cmd_run ends it with
    # os._exit once everything is closed and flushed, without the interpreter's teardown of numpy, scipy...).
    assert code == 0 and stopped_s < 2.0 and ended_s < 2.0, (code, stopped_s, ended_s, d.log_tail())
    assert "stopped while waiting; nothing was consumed" in _msgs(d)


def test_line_daemon_waits_for_the_database(tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "l.toml"
    cfg.write_text('[source]\nkind = "stdin"\n[output]\nstore = true\n[store]\n'
                   'url = "postgresql+psycopg://nobody:x@127.0.0.1:9/none"\n[logging]\nformat = "json"\n'
                   '[metrics]\nhost = "127.0.0.1"\nport = 0\n')
    log = tmp_path / "l.log"
    with open(log, "wb") as f:
        p = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(cfg)], stdin=subprocess.PIPE,
                             stdout=f, stderr=f)
        wait_until(lambda: "waiting for database" in log.read_text(), 60, "the waiting line")
        # The HTTP server comes first: /readyz says what the daemon waits for (as the Kafka sidecar's).
        url = next(json.loads(line)["url"] for line in log.read_text().splitlines() if '"serving metrics"' in line)
        status, body = _readyz(int(url.rsplit(":", 1)[1].split("/")[0]))
        assert status == 503 and "waiting for database" in body["waiting_for"], body
        started = time.monotonic()
        p.terminate()
        code = p.wait(30)
    assert code == 0 and time.monotonic() - started < 2.0, log.read_text()
    assert "Traceback" not in log.read_text()


UNAVAILABLE = "{} topic unavailable; records wait and are sent again with backoff (the SQL store has the results)"


def test_output_topics_unavailable_do_not_stop_consuming(kafka_broker, profile, tmp_path):
    """The output/dead-letter producer reaches no broker: consuming and storing go on, /readyz says degraded."""
    import socket

    topic, events = kafka_broker.new_topic(partitions=2), _events(1500, seed=34)
    bad = [b"\xff\xfe not utf8"]
    store = f"sqlite:///{tmp_path / 'd.db'}"
    cfg = write_config(tmp_path / "d.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="d", store_url=store,
                       profile=profile)
    cfg.write_text(cfg.read_text().replace("[store]", 'dead_letter_topic = "dlq"\noutput_topic = "out"\n[store]'))
    with socket.socket() as dead:  # bound, not listening: every connection is refused
        dead.bind(("127.0.0.1", 0))
        with DaemonProcess(cfg, tmp_path / "d.log", producer_bootstrap=f"127.0.0.1:{dead.getsockname()[1]}") as d:
            http = _port(d)
            ends = produce(kafka_broker.bootstrap, topic, events[:750], bad)
            wait_until(lambda: caught_up(store, "d", topic, ends), 90, "the first half", d)
            ends = produce(kafka_broker.bootstrap, topic, events[750:])
            wait_until(lambda: caught_up(store, "d", topic, ends), 90, "the second half", d)
            wait_until(lambda: UNAVAILABLE.format("output") in _msgs(d), 30, "the unavailable line", d)
            status, body = _readyz(http)
            assert status == 200, body  # degraded, still ready: the results are in SQL
            assert set(body["degraded"]) == {"output_topic", "dead_letter_topic"}, body
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=2).read().decode()
            assert 'nlpmon_publish_errors_total{topic_kind="output"}' in metrics
            assert _msgs(d).count(UNAVAILABLE.format("output")) == 1  # once per state change
            assert _msgs(d).count(UNAVAILABLE.format("dead-letter")) == 1
            code, stopped_s, ended_s = _stop_timed(d)
    assert code == 0 and stopped_s < 5.0, (code, stopped_s, d.log_tail())
    assert "stopped with records not sent to the output or dead-letter topic (the SQL store has the results)" in (
        _msgs(d))
    assert "Traceback" not in d.log.read_text()
    assert all_results(store, MODELS) == _reference(kafka_broker, profile, tmp_path, topic, ends)
