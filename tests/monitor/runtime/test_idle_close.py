"""window.idle_close_seconds in the real daemon: a followed file that goes quiet still gets its last window tested,
and a Kafka topic that goes quiet its last window's labels result."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from monitor.jobs.profile_builder import build_profile
from monitor.ingest.reference import save_profile
from monitor.devkit.synth.traffic import generate_events
from sinks.sql import SqlStore

T0 = 1_764_000_000_000


def test_a_quiet_file_closes_its_last_window_by_processing_time(tmp_path):
    events = tmp_path / "events.jsonl"
    # Two-second windows: the first full, the second started, then the producer stops writing.
    lines = [json.dumps({"ts": T0 + i * 100, "model": "m", "prediction": "p", "latency_ms": 5.0, "text": "a b c"})
             for i in range(30)]
    events.write_text("\n".join(lines) + "\n")
    reference = tmp_path / "ref.jsonl"
    reference.write_text("\n".join(lines * 10) + "\n")
    profile, _ = build_profile(str(reference))
    save_profile(profile, tmp_path / "profile.json")
    results = tmp_path / "results.jsonl"
    (tmp_path / "c.toml").write_text(
        f'[source]\nkind = "file"\npath = "{events}"\nfollow = true\npoll_interval_seconds = 0.1\n'
        f'[output]\nresults_path = "{results}"\n'
        '[window]\nsize_seconds = 2\nlateness_seconds = 0.5\nmin_events = 1\nidle_close_seconds = 1\n'
        f'max_future_seconds = 1e9\n[metrics]\nenabled = false\n[reference]\npaths = ["{tmp_path / "profile.json"}"]\n')
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(tmp_path / "c.toml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        got = []
        while time.monotonic() < deadline and len(got) < 2:
            time.sleep(0.2)
            got = [json.loads(x) for x in results.read_text().splitlines()] if results.exists() else []
        assert proc.poll() is None, proc.stderr.read().decode()  # still following the file
        # The first window closed on the events' own watermark; the second, never followed by a later event,
        # closed once the source had been idle for idle_close_seconds: complete (not partial) and tested.
        assert [(r["window_start"], r["events"], r["partial"], r["tested"]) for r in got] == [
            ("2025-11-24T16:00:00.000Z", 20, False, True), ("2025-11-24T16:00:02.000Z", 10, False, True)]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_a_quiet_topic_gets_its_last_windows_labels_result(kafka_broker, profile, tmp_path):
    # Issue 21: the last window closes at one idle advance, its labels result is due at a later one at which no
    # window closes; Pipeline.close_idle used to hand the labels join its restored, pre-idle clock, and the
    # result never came. Here on the real daemon (KafkaDaemon.step's idle path), with nothing after the window.
    from sinks.sql.labels import label_results
    from tests.monitor.runtime.harness import DaemonProcess, caught_up, produce, wait_until, write_config

    idle_s, delay_s, slack_s = 2, 3, 10
    # One 10-second window [T0, T0 + 10 s): predictions from 5 s to 9.4 s, each labelled up to 0.3 s later. The
    # window closes after idle_s of quiet (9.4 s + 2 s passes its end); its label period ends at 10 s + delay_s,
    # a further advance at which no window closes.
    events = list(generate_events(45, seed=8, start_ms=T0 + 5_000, rate_per_s=10, label_event_share=1.0,
                                  label_delay_ms=(0, 300)))
    assert max(e["ts"] for e in events) < T0 + 10_000
    topic = kafka_broker.new_topic()
    store = f"sqlite:///{tmp_path / 'idle.db'}"
    config = write_config(tmp_path / "idle.toml", bootstrap=kafka_broker.bootstrap, topic=topic, group="idle",
                          store_url=store, profile=profile,
                          extra=f"[labels]\nenabled = true\nmax_delay_seconds = {delay_s}\n")
    text = config.read_text()
    window = "size_seconds = 30\nlateness_seconds = 5\nmin_events = 50\n"
    assert window in text
    config.write_text(text.replace(window, "size_seconds = 10\nlateness_seconds = 0\nmin_events = 20\n"
                                           f"idle_close_seconds = {idle_s}\n"))
    ends = produce(kafka_broker.bootstrap, topic, events)

    def stored() -> list[dict]:
        with SqlStore(store) as s:
            return label_results(s, "sentiment")

    with DaemonProcess(config, tmp_path / "idle.log") as daemon:
        wait_until(lambda: caught_up(store, "idle", topic, ends), 90, "the daemon to checkpoint every record", daemon)
        consumed = time.monotonic()  # the last record was consumed before its checkpoint: quiet since then at least
        assert stored() == []  # nothing is due on the records alone: the window has not even closed
        wait_until(lambda: bool(stored()), idle_s + delay_s + slack_s, "the last window's labels result", daemon)
        waited = time.monotonic() - consumed
        [result] = stored()
        with SqlStore(store) as s:
            [window_result] = s.history("sentiment")
        assert daemon.stop() == 0, daemon.log_tail()
    predictions = sum(e.get("kind") != "label" for e in events)
    assert (result["window_start"], result["partial"], result["predictions"], result["labelled"]) == (
        "2025-11-24T16:00:00.000Z", False, predictions, predictions)
    assert (window_result["window_start"], window_result["partial"], window_result["events"]) == (
        "2025-11-24T16:00:00.000Z", False, predictions)
    assert waited >= 0.5, waited  # it came after quiet time, not with the records
