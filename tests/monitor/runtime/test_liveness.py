"""Liveness (/healthz): a loop that hangs fails it after ``probe.stall_seconds``; legitimate waits (a frozen
broker, a checkpoint waiting on the database, waiting for input) never do (monitor/runtime/heartbeat.py)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from monitor.config import ConfigError, load_config
from monitor.devkit.synth.traffic import generate_events, write_events
from monitor.ingest.features import base_features
from monitor.runtime.heartbeat import Heartbeat
from monitor.runtime.http import HttpServer
from monitor.runtime.kafka_daemon import KafkaDaemon
from monitor.runtime.line_daemon import run_line_source
from monitor.runtime.shutdown import Shutdown
from tests.monitor.runtime.harness import produce, wait_until, write_config

STALL_S = 1.0


def get(url: str) -> tuple[int, str]:
    try:
        r = urllib.request.urlopen(url, timeout=5)
        return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_heartbeat_stalls_after_stall_seconds_unless_waiting():
    clock = FakeClock()
    hb = Heartbeat(10.0, clock=clock)
    clock.t += 9.9
    assert hb.check() == (True, "ok")
    clock.t += 0.2
    alive, reason = hb.check()
    assert not alive and reason.startswith("stalled: the consume loop has made no progress for 10 s")
    assert "\n" not in reason and "probe.stall_seconds = 10" in reason
    with hb.waiting("database (checkpoint)"):
        clock.t += 500
        assert hb.check() == (True, "ok: waiting on database (checkpoint) for 510 s")
        assert hb.status()["waiting_on"] == "database (checkpoint)"
    assert hb.check() == (True, "ok")  # the end of a wait is progress
    clock.t += 11
    assert not hb.check()[0]
    hb.beat()
    assert hb.check()[0] and hb.status() == {"alive": True, "seconds_since_progress": 0.0, "waiting_on": None,
                                             "stall_seconds": 10.0}


def test_healthz_answers_503_with_the_reason_when_not_alive():
    state = {"alive": True}
    with HttpServer(CollectorRegistry(), host="127.0.0.1", port=0,
                    liveness=lambda: (state["alive"], "ok" if state["alive"] else "stalled: stuck")) as s:
        assert get(f"http://127.0.0.1:{s.port}/healthz") == (200, "ok\n")
        state["alive"] = False
        assert get(f"http://127.0.0.1:{s.port}/healthz") == (503, "stalled: stuck\n")


def test_stall_seconds_is_validated(tmp_path):
    assert load_config(env={}, overrides={"source.kind": "stdin"}).probe.stall_seconds == 120.0
    with pytest.raises(ConfigError, match="probe.stall_seconds: must be >= 0.1"):
        load_config(env={}, overrides={"source.kind": "stdin", "probe.stall_seconds": 0})


class Hooks:
    """The injected hooks: a featurizer and a checkpoint pause that block on events while armed."""

    def __init__(self):
        self.hang_featurize, self.hang_commit = threading.Event(), threading.Event()
        self.entered, self.release = threading.Event(), threading.Event()

    def featurize(self, events, features, tokenizer):
        self._hold(self.hang_featurize)
        return base_features(events, features, tokenizer)

    def before_commit(self):
        self._hold(self.hang_commit)

    def _hold(self, armed: threading.Event) -> None:
        if armed.is_set():
            self.entered.set()
            assert self.release.wait(60)


class InProcessDaemon:
    def __init__(self, config, hooks: Hooks | None = None):
        self.shutdown = Shutdown()
        kw = {"featurize": hooks.featurize, "before_commit": hooks.before_commit} if hooks else {}
        self.daemon = KafkaDaemon(config, shutdown=self.shutdown, **kw)
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_until(lambda: getattr(self.daemon, "http_port", None) is not None, 30, "the HTTP server")
        self.url = f"http://127.0.0.1:{self.daemon.http_port}"
        return self

    def __exit__(self, *exc):
        self.shutdown.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive()


def _config(tmp_path, broker, topic: str, group: str, profile):
    store = f"sqlite:///{tmp_path / (group + '.db')}"
    path = write_config(tmp_path / f"{group}.toml", bootstrap=broker.bootstrap, topic=topic, group=group,
                        store_url=store, profile=profile, extra=f"[probe]\nstall_seconds = {STALL_S}\n")
    return load_config(path, env={})


def _events(n: int, seed: int) -> list[dict]:
    return generate_events(n, seed=seed, rate_per_s=20)


def test_a_hung_consume_loop_fails_healthz_until_it_moves_again(kafka_broker, profile, tmp_path):
    topic = kafka_broker.new_topic()
    hooks = Hooks()
    with InProcessDaemon(_config(tmp_path, kafka_broker, topic, "hang", profile), hooks) as d:
        produce(kafka_broker.bootstrap, topic, _events(200, seed=1))
        wait_until(lambda: get(d.url + "/readyz")[0] == 200, 60, "readiness")
        time.sleep(STALL_S * 2)  # an idle stream is not a stall: the loop keeps polling
        assert get(d.url + "/healthz") == (200, "ok\n")
        hooks.hang_featurize.set()
        produce(kafka_broker.bootstrap, topic, _events(50, seed=2))
        assert hooks.entered.wait(60)
        wait_until(lambda: get(d.url + "/healthz")[0] == 503, 10, "healthz to fail")
        code, body = get(d.url + "/healthz")
        assert code == 503 and body.startswith("stalled: the consume loop has made no progress for ")
        assert body.count("\n") == 1
        hooks.hang_featurize.clear()
        hooks.release.set()
        wait_until(lambda: get(d.url + "/healthz")[0] == 200, 10, "healthz to recover")


def test_a_checkpoint_waiting_on_the_database_is_not_a_stall(kafka_broker, profile, tmp_path):
    topic = kafka_broker.new_topic()
    hooks = Hooks()
    with InProcessDaemon(_config(tmp_path, kafka_broker, topic, "dbwait", profile), hooks) as d:
        produce(kafka_broker.bootstrap, topic, _events(100, seed=3))
        wait_until(lambda: get(d.url + "/readyz")[0] == 200, 60, "readiness")
        hooks.hang_commit.set()
        produce(kafka_broker.bootstrap, topic, _events(50, seed=4))
        assert hooks.entered.wait(60)
        deadline = time.monotonic() + STALL_S * 3
        while time.monotonic() < deadline:
            code, body = get(d.url + "/healthz")
            assert code == 200 and body.startswith("ok: waiting on database (checkpoint)"), body
            time.sleep(0.2)
        hooks.hang_commit.clear()
        hooks.release.set()
        wait_until(lambda: get(d.url + "/healthz") == (200, "ok\n"), 10, "the wait to end")


def test_a_frozen_broker_is_readiness_not_liveness(private_kafka_broker, profile, tmp_path):
    broker = private_kafka_broker
    topic = broker.new_topic()
    with InProcessDaemon(_config(tmp_path, broker, topic, "frozen", profile)) as d:
        produce(broker.bootstrap, topic, _events(200, seed=5))
        wait_until(lambda: get(d.url + "/readyz")[0] == 200, 60, "readiness")
        with broker.paused():
            frozen_at, unready_at = time.monotonic(), None
            while unready_at is None or time.monotonic() < unready_at + STALL_S * 3:
                code, body = get(d.url + "/healthz")  # alive: a restart would not bring the broker back
                assert code == 200 and body.startswith("ok"), body
                if unready_at is None and get(d.url + "/readyz")[0] == 503:
                    unready_at = time.monotonic()
                assert time.monotonic() - frozen_at < 90, "the frozen broker never made /readyz fail"
                time.sleep(0.2)
        wait_until(lambda: get(d.url + "/readyz")[0] == 200, 60, "readiness after the broker came back")
        assert get(d.url + "/healthz")[0] == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_hung_line_loop_fails_healthz_while_waiting_for_input_does_not(tmp_path):
    write_events(tmp_path / "in.jsonl", generate_events(1200, seed=6, rate_per_s=20))
    port = _free_port()
    config = load_config(env={}, overrides={
        "source.kind": "file", "source.path": str(tmp_path / "in.jsonl"), "source.follow": True,
        "source.poll_interval_seconds": 0.05, "window.size_seconds": 10.0, "window.lateness_seconds": 0.0,
        "window.min_events": 10, "metrics.host": "127.0.0.1", "metrics.port": port, "probe.stall_seconds": STALL_S})
    shutdown, entered, release = Shutdown(), threading.Event(), threading.Event()

    def on_result(_result) -> None:  # the hook: the first window's result blocks the loop
        if not release.is_set():
            entered.set()
            assert release.wait(60)

    run = threading.Thread(target=run_line_source, args=(config,), daemon=True,
                           kwargs={"path": str(tmp_path / "in.jsonl"), "output": None, "serve_metrics": True,
                                   "shutdown": shutdown, "on_result": on_result})
    run.start()
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        assert entered.wait(60)
        wait_until(lambda: get(url)[0] == 503, 10, "healthz to fail")
        assert get(url)[1].startswith("stalled: the line loop has made no progress for ")
        release.set()
        wait_until(lambda: get(url) == (200, "ok\n") or get(url)[1].startswith("ok: waiting on input"), 10, "recovery")
        time.sleep(STALL_S * 2)  # the followed file is read to its end: waiting for lines is not a stall
        assert get(url)[0] == 200
    finally:
        release.set()
        shutdown.should_exit = True
        run.join(30)
    assert not run.is_alive()
