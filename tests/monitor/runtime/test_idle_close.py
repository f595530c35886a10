"""window.idle_close_seconds in the real daemon: a followed file that goes quiet still gets its last window tested."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from monitor.jobs.profile_builder import build_profile
from monitor.ingest.reference import save_profile

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
