"""ReevalScheduler with a fake clock and a fake worker process (tests/monitor/reeval/fake_worker.py).

The clock drives cooldown, interval and timeout; the worker is a real child process, so busy, kill and
crash paths are the real ones. Metrics are read back from a registry of the test's own, runs from SQLite.
"""

from __future__ import annotations

import dataclasses

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from detectors.classification import CalibrationTable, estimate_accuracy
from monitor.config import ReevalConfig
from monitor.reeval.scheduler import ReevalScheduler
from sinks.prometheus import PrometheusSink
from sinks.sql import SqlStore
from tests import factories

FAKE_WORKER = [sys.executable, str(Path(__file__).with_name("fake_worker.py"))]


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def spec(tmp_path: Path, name: str = "model", **behaviour) -> Path:
    """The fake worker's "model": a JSON file saying how the run behaves."""
    p = tmp_path / f"{name}.onnx"
    p.write_text(json.dumps(behaviour))
    return p


@pytest.fixture
def env(tmp_path):
    """Registry, sink, SQLite store and a factory for schedulers with the fake clock and worker."""

    class Env:
        registry = CollectorRegistry()
        clock = FakeClock()
        store = SqlStore(f"sqlite:///{tmp_path / 'nlpmon.db'}")
        made: list[ReevalScheduler] = []

        def __init__(self):
            self.sink = PrometheusSink(self.registry)

        def scheduler(self, model: Path | None = None, *, store="default", **settings) -> ReevalScheduler:
            base = dict(enabled=True, model=str(model or spec(tmp_path)), tokenizer=str(tmp_path),
                        data=str(tmp_path / "heldout.jsonl"), cooldown_seconds=600.0, timeout_seconds=60.0)
            s = ReevalScheduler(ReevalConfig(**{**base, **settings}), store=self.store if store == "default" else store,
                                sink=self.sink, clock=self.clock, command=FAKE_WORKER)  # fmt: skip
            s.start()
            self.made.append(s)
            return s

        def runs(self, outcome: str) -> float:
            return self.registry.get_sample_value("nlpmon_reeval_runs_total", {"outcome": outcome})

        def gauge(self, name: str, **labels) -> float | None:
            return self.registry.get_sample_value(name, labels)

    e = Env()
    yield e
    for s in e.made:
        s.close()
    e.store.close()


def wait_finished(s: ReevalScheduler, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished = s.poll()
        if finished is not None:
            return finished
        time.sleep(0.02)
    raise AssertionError("the run did not finish")


def window(drifted=True, model="sentiment", version="3", start="2026-01-01T00:00:00.000Z"):
    start_ms = factories.ms(start)
    return factories.window(start_ms, start_ms + 300_000, model=model, version=version, drifted=drifted, events=500)


# -- triggers ------------------------------------------------------------------------------------------------------


def test_drift_starts_a_run_and_the_cooldown_holds_the_next(env):
    s = env.scheduler(cooldown_seconds=600.0)
    assert s.on_window(window(drifted=False)) is False
    assert s.on_window(window()) is True
    run = wait_finished(s)
    assert (run.trigger, run.outcome, run.model, run.version, run.dataset) == ("drift", "success", "sentiment", "3", "heldout")
    env.clock.t += 599  # within the cooldown (counted from the start of the last run)
    assert s.on_window(window()) is False
    assert env.runs("skipped_busy") == 0  # a cooldown is not a busy skip
    env.clock.t += 1
    assert s.on_window(window()) is True
    assert wait_finished(s).outcome == "success"
    assert env.runs("success") == 2


def test_no_drift_trigger_when_disabled_or_for_another_model(env):
    assert env.scheduler(on_drift=False).on_window(window()) is False
    s = env.scheduler(model_name="sentiment")
    assert s.on_window(window(model="intent")) is False
    assert s.on_window(window(model="sentiment")) is True
    wait_finished(s)


def test_interval_runs_are_due_after_the_interval_without_a_run(env):
    assert env.scheduler(interval_seconds=0.0).tick(env.clock.t + 10**6) is False  # 0 = off
    s = env.scheduler(interval_seconds=100.0)
    t0 = env.clock.t
    assert s.tick(t0 + 99) is False
    env.clock.t = t0 + 100
    assert s.tick() is True
    run = wait_finished(s)
    # Interval and on-demand runs carry the configured labels: the ONNX file's stem and "unversioned".
    assert (run.trigger, run.model, run.version) == ("interval", "model", "unversioned")
    assert s.tick(t0 + 199) is False
    assert s.tick(t0 + 200) is True
    wait_finished(s)


def test_one_run_at_a_time_and_busy_triggers_are_counted(env, tmp_path):
    s = env.scheduler(spec(tmp_path, "slow", sleep=60), cooldown_seconds=0.0)
    assert s.request() == "accepted"
    assert s.request() == "busy"  # requested, not started yet: still one at a time
    assert s.tick() is True
    assert s.status()["running"]["trigger"] == "on_demand"
    assert env.gauge("nlpmon_reeval_running") == 1.0
    assert s.request() == "busy"
    assert s.on_window(window()) is False
    assert s.tick(env.clock.t + 10**6) is False
    assert env.runs("skipped_busy") == 3
    proc = s._run.proc
    s.close()  # shutdown kills the run; it is not counted as a failure
    assert proc.poll() is not None
    assert env.runs("failure") == 0 and env.gauge("nlpmon_reeval_running") == 0.0


# -- timeout and failures ------------------------------------------------------------------------------------------


def test_timeout_kills_the_run_counts_and_stores_it(env, tmp_path):
    s = env.scheduler(spec(tmp_path, "slow", sleep=60), timeout_seconds=30.0)
    assert s.request() == "accepted" and s.tick()
    proc = s._run.proc
    env.clock.t += 29
    assert s.poll() is None and proc.poll() is None
    env.clock.t += 2
    run = s.poll()
    assert run.outcome == "timeout" and "30 s" in run.error
    assert proc.poll() is not None  # killed, not left behind
    assert env.runs("timeout") == 1
    stored = env.store.reeval_runs()
    assert [(r.outcome, r.trigger, r.result) for r in stored] == [("timeout", "on_demand", None)]
    assert stored[0].duration_seconds == pytest.approx(31.0)


@pytest.mark.parametrize(
    "behaviour, message",
    [
        ({"exit": 1, "stderr": "Traceback ...\nRuntimeError: boom\n"}, "exited with code 1: Traceback ...\nRuntimeError: boom"),
        ({"error": "heldout.jsonl:3: label 'neutral' is not in the label map"}, "DataError: heldout.jsonl:3"),
    ],
)
def test_a_failed_run_is_counted_stored_and_the_next_one_runs(env, tmp_path, behaviour, message):
    bad = spec(tmp_path, "bad", **behaviour)
    s = env.scheduler(bad, cooldown_seconds=0.0)
    assert s.on_window(window()) is True
    run = wait_finished(s)
    assert run.outcome == "failure" and message in run.error
    assert env.runs("failure") == 1 and env.gauge("nlp_reeval_accuracy_ratio", model="sentiment", version="3", dataset="heldout") is None
    [row] = env.store.reeval_runs(outcome="failure")
    assert message in row.error and row.result is None
    # The scheduler carries on: the model is fixed, the next run succeeds.
    bad.write_text(json.dumps({"accuracy": 0.9}))
    assert s.on_window(window()) is True
    assert wait_finished(s).outcome == "success"
    assert env.gauge("nlp_reeval_accuracy_ratio", model="sentiment", version="3", dataset="heldout") == 0.9


def test_a_bad_label_map_fails_the_run_without_starting_a_worker(env):
    s = env.scheduler(label_map="neg=zero")
    assert s.on_window(window()) is False
    assert s.last.outcome == "failure" and "not an integer" in s.last.error
    assert env.runs("failure") == 1 and s._run is None


def test_an_unreachable_store_does_not_stop_the_scheduler(env, tmp_path):
    down = SqlStore(f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}")
    s = env.scheduler(store=down, cooldown_seconds=0.0)
    assert s.on_window(window()) is True
    run = wait_finished(s)
    assert run.outcome == "success" and run.id is None
    assert env.gauge("nlp_reeval_accuracy_ratio", model="sentiment", version="3", dataset="heldout") == 0.8
    assert s.status()["unsaved_runs"] == 1
    down.close()


# -- results: baseline, metrics, label-free estimate ---------------------------------------------------------------


def test_first_stored_run_is_the_baseline_of_later_runs(env, tmp_path):
    model = spec(tmp_path, accuracy=0.9)
    s = env.scheduler(model, cooldown_seconds=0.0)
    labels = dict(model="sentiment", version="3", dataset="heldout")
    s.on_window(window())
    first = wait_finished(s)
    assert first.result["accuracy_drop"] is None and first.id == 1
    assert env.gauge("nlp_reeval_accuracy_drop", **labels) is None  # the first run is the baseline
    model.write_text(json.dumps({"accuracy": 0.75}))
    s.on_window(window())
    second = wait_finished(s)
    assert second.result["baseline"] == {"source": "first_run", "run": "1", "accuracy": 0.9}
    assert env.gauge("nlp_reeval_accuracy_drop", **labels) == pytest.approx(0.15)
    # A new scheduler (a restarted daemon) finds the same baseline in the store.
    again = env.scheduler(model, cooldown_seconds=0.0)
    again.on_window(window())
    assert wait_finished(again).result["baseline"]["run"] == "1"
    # A configured baseline wins.
    configured = env.scheduler(model, cooldown_seconds=0.0, baseline_accuracy=0.8)
    configured.on_window(window())
    assert wait_finished(configured).result["baseline"] == {"source": "configured", "run": None, "accuracy": 0.8}
    assert env.gauge("nlp_reeval_accuracy_drop", **labels) == pytest.approx(0.05)


def test_gauges_come_straight_from_the_result(env, tmp_path):
    before = time.time()
    s = env.scheduler(spec(tmp_path, accuracy=0.8125, macro_f1=0.8, ece=0.031, duration_seconds=2.25),
                      dataset_name="heldout-2026q3", model_name="sentiment")
    s.on_window(window(version="7"))
    wait_finished(s)
    labels = dict(model="sentiment", version="7", dataset="heldout-2026q3")
    assert env.gauge("nlp_reeval_accuracy_ratio", **labels) == 0.8125
    assert env.gauge("nlp_reeval_f1", **labels) == 0.8
    assert env.gauge("nlp_reeval_ece", **labels) == 0.031
    assert env.gauge("nlp_reeval_duration_seconds", **labels) == 2.25
    assert before <= env.gauge("nlp_reeval_last_run_timestamp_seconds", **labels) <= time.time()
    [row] = env.store.reeval_runs("sentiment", dataset="heldout-2026q3")
    assert (row.version, row.trigger, row.outcome, row.accuracy) == ("7", "drift", "success", 0.8125)
    assert row.result["options_seen"]["model_name"] == "sentiment"
    assert row.result["options_seen"]["dataset_name"] == "heldout-2026q3"


def test_options_follow_the_config(env):
    s = env.scheduler(label_map="neg=0,pos=1", threads=2, max_length=0, model_version="4")
    s.request()
    s.tick()
    seen = wait_finished(s).result["options_seen"]
    assert seen == {"model_name": "model", "model_version": "4", "dataset_name": "heldout",
                    "label_map": [["neg", 0], ["pos", 1]], "intra_op_threads": 2, "max_length": None,
                    "candidate": None, "traffic_texts": []}


class _Ev:
    def __init__(self, model: str, text: str | None):
        self.model, self.text = model, text


def test_with_a_candidate_the_latest_traffic_texts_go_to_the_run(env, tmp_path):
    s = env.scheduler(candidate=str(tmp_path / "int8.onnx"), traffic_sample=3, model_name="sentiment")
    s.observe_events([_Ev("sentiment", "one"), _Ev("intent", "not this model"), _Ev("sentiment", None)])
    s.observe_events([_Ev("sentiment", ""), _Ev("sentiment", "two"), _Ev("sentiment", "three")])
    s.observe_events([_Ev("sentiment", "four")])
    assert s.traffic_texts == 3 and s.status()["traffic_texts"] == 3
    s.request()
    s.tick()
    seen = wait_finished(s).result["options_seen"]
    assert seen["candidate"] == str(tmp_path / "int8.onnx")
    assert seen["traffic_texts"] == ["two", "three", "four"]  # the newest, in arrival order


def test_no_texts_are_kept_without_a_candidate_or_with_a_zero_sample(env, tmp_path):
    for settings in ({}, {"candidate": str(tmp_path / "int8.onnx"), "traffic_sample": 0}):
        s = env.scheduler(**settings)
        s.observe_events([_Ev("model", "kept only for a candidate")])
        assert s.traffic_texts == 0


def test_windows_get_the_label_free_estimate_from_the_latest_calibration(env, tmp_path):
    table = {"bins": 4, "counts": [0, 5, 10, 20], "accuracy": [None, 0.4, 0.6, 0.9],
             "mean_confidence": [None, 0.45, 0.65, 0.9]}
    s = env.scheduler(spec(tmp_path, calibration=table), cooldown_seconds=0.0)
    confidences = np.array([0.3, 0.55, 0.7, 0.95, 0.99, np.nan])  # NaN: an error event
    # Before any re-evaluation there is no table: no estimate, no gauge.
    assert s.observe_confidences(window(), confidences) is None
    assert env.gauge("nlp_estimated_accuracy_ratio", model="sentiment", version="3") is None
    s.on_window(window())
    run = wait_finished(s)
    # The run's table is applied at once to the latest window of each stream (numpy by hand: bins of width
    # 0.25; 0.3 -> bin 1 (0.4), 0.55 and 0.7 -> bin 2 (0.6), 0.95 and 0.99 -> bin 3 (0.9)).
    expected = (0.4 + 0.6 + 0.6 + 0.9 + 0.9) / 5
    assert env.gauge("nlp_estimated_accuracy_ratio", model="sentiment", version="3") == pytest.approx(expected)
    block = run.result["label_free_estimate"]
    assert block["calibration"] == "none" and block["calibration_run"] is None
    # Without an earlier table the held-out estimate is the mean confidence of the held-out set.
    assert block["heldout_estimated_accuracy"] == pytest.approx((5 * 0.45 + 10 * 0.65 + 20 * 0.9) / 35)
    assert block["heldout_accuracy"] == 0.8
    assert block["windows"] == [{"model": "sentiment", "version": "3", "window_start": "2026-01-01T00:00:00.000Z",
                                 "events": 500, "estimated_accuracy_before": None,
                                 "estimated_accuracy": pytest.approx(expected)}]
    # Every later window uses the table.
    later = np.array([0.96, 0.97, 0.6, 0.1])
    est = s.observe_confidences(window(start="2026-01-01T00:05:00.000Z"), later).estimate  # issue 21: the estimate now comes with its interval
    assert est == pytest.approx(estimate_accuracy(CalibrationTable.from_dict(table), later))
    assert est == pytest.approx((0.9 + 0.9 + 0.6 + 0.1) / 4)  # bin 0 was empty: 0.1 counts for itself
    assert env.gauge("nlp_estimated_accuracy_ratio", model="sentiment", version="3") == pytest.approx(est)
    # With window.by_segment each segment's latest window has its own estimate (and series).
    fr = dataclasses.replace(window(start="2026-01-01T00:05:00.000Z"), segment="fr")
    assert s.observe_confidences(fr, np.array([0.3])).estimate == pytest.approx(0.4)
    assert env.gauge("nlp_estimated_accuracy_ratio", model="sentiment", version="3", segment="fr") == pytest.approx(0.4)
    assert env.gauge("nlp_estimated_accuracy_ratio", model="sentiment", version="3", segment="") == pytest.approx(est)
    assert set(s.status()["estimates"]) == {"sentiment/3", "sentiment/3/fr"}
    # The next run is measured against the previous run's table.
    s.on_window(window())
    block = wait_finished(s).result["label_free_estimate"]
    assert block["calibration"] == "previous_run" and block["calibration_run"] == run.id
    assert block["heldout_estimated_accuracy"] == pytest.approx((5 * 0.4 + 10 * 0.6 + 20 * 0.9) / 35)
    assert block["heldout_estimate_error"] == pytest.approx(block["heldout_estimated_accuracy"] - 0.8)


def test_a_restarted_scheduler_resumes_cooldown_and_calibration(env, tmp_path):
    model = spec(tmp_path)
    s = env.scheduler(model, cooldown_seconds=3600.0)
    s.on_window(window())
    wait_finished(s)
    again = env.scheduler(model, cooldown_seconds=3600.0)
    assert again.on_window(window()) is False  # the stored run started seconds ago
    assert again.observe_confidences(window(), np.array([0.95])).estimate == pytest.approx(0.875)
    # A calibration stored for another model file is not used.
    model.write_text(json.dumps({"accuracy": 0.5}))
    other = env.scheduler(model, cooldown_seconds=3600.0)
    assert other.observe_confidences(window(), np.array([0.95])) is None


# -- POST /reeval --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "client, headers, token, code",
    [
        ("127.0.0.1", {}, "", 202),
        ("::1", {}, "", 202),
        ("::ffff:127.0.0.1", {}, "", 202),
        ("10.1.2.3", {}, "", 403),  # from the pod network: refused without a token
        ("10.1.2.3", {"Authorization": "Bearer s3cret"}, "", 403),  # no token configured: none matches
        ("10.1.2.3", {"Authorization": "Bearer s3cret"}, "s3cret", 202),
        ("10.1.2.3", {"authorization": "bearer s3cret"}, "s3cret", 202),
        ("10.1.2.3", {"Authorization": "Bearer wrong"}, "s3cret", 403),
        ("10.1.2.3", {"Authorization": "Basic s3cret"}, "s3cret", 403),
        ("10.1.2.3", {}, "s3cret", 403),
    ],
)
def test_post_reeval_is_local_or_token_protected(env, client, headers, token, code):
    s = env.scheduler(token=token)
    status, body = s.handle_post(headers, b"", client)
    assert status == code, body
    assert (s.status()["requested"] == "on_demand") == (code == 202)


def test_post_reeval_answers_busy_while_a_run_is_in_progress(env, tmp_path):
    import urllib.error
    import urllib.request

    from monitor.runtime.http import HttpServer

    s = env.scheduler(spec(tmp_path, "slow", sleep=60))
    server = HttpServer(env.registry, host="127.0.0.1", port=0, post_handlers={"/reeval": s.handle_post}).start()
    try:
        url = f"http://127.0.0.1:{server.port}/reeval"
        first = urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=5)
        assert first.status == 202 and json.loads(first.read())["status"] == "accepted"
        s.tick()
        with pytest.raises(urllib.error.HTTPError) as busy:
            urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=5)
        assert busy.value.code == 409
        assert json.loads(busy.value.read())["running"]["trigger"] == "on_demand"
    finally:
        server.stop()
