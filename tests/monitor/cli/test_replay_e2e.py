"""End to end through the installed ``nlpmon`` command: drift is found in the right windows and nowhere else;
/metrics is served while replaying; the daemon drains and exits 0 on SIGTERM."""

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from monitor.devkit.synth.traffic import generate_events, write_events

WINDOW_S = 60  # 1200 events per window at 20 events/s


def nlpmon() -> list[str]:
    exe = shutil.which("nlpmon", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "monitor.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def epoch_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.fixture(scope="module")
def drifting(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    events = list(generate_events(34_000, seed=21, rate_per_s=20, drift_after=24_000))
    write_events(d / "ref.jsonl", events[:10_000])
    write_events(d / "live.jsonl", events[10_000:])
    subprocess.run(nlpmon() + ["reference", "build", str(d / "ref.jsonl"), "-o", str(d / "profile.json")], check=True)
    return d, events[24_000]["ts"]


def test_drift_found_in_the_right_windows_and_nowhere_else(drifting):
    d, drift_ts = drifting
    out = subprocess.run(
        nlpmon() + ["replay", str(d / "live.jsonl"), "-r", str(d / "profile.json"), "--window-seconds", str(WINDOW_S)],
        capture_output=True, text=True, check=True,
    )
    results = [json.loads(line) for line in out.stdout.splitlines()]
    clean = [r for r in results if epoch_ms(r["window_end"]) <= drift_ts]
    drifted = [r for r in results if epoch_ms(r["window_start"]) >= drift_ts]
    assert len(clean) >= 5 and len(drifted) >= 3
    assert [r for r in clean if r["tested"] and r["drifted"]] == []  # no false alarm on clean traffic
    tested_drifted = [r for r in drifted if r["tested"]]
    assert tested_drifted and all(r["drift"]["input"]["drifted"] for r in tested_drifted)
    assert all(r["drift"]["confidence"]["drifted"] for r in tested_drifted)
    # the injected drift is in length and vocabulary: those features must be among the drifted ones
    features = tested_drifted[0]["drift"]["input"]["features"]
    assert features["char_length"]["drifted"] and features["non_ascii_ratio"]["drifted"]
    # class balance was not changed: the prediction test must stay quiet
    assert not any(r["drift"]["prediction"]["drifted"] for r in results if r["tested"])


def test_metrics_served_while_replaying_stdin(drifting):
    d, _ = drifting
    port = free_port()
    proc = subprocess.Popen(
        nlpmon() + ["replay", "-", "-r", str(d / "profile.json"), "--metrics-port", str(port), "--window-events", "1000",
                    "--set", "metrics.host=127.0.0.1", "--set", "source.batch_size=100"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        lines = (d / "live.jsonl").read_bytes().splitlines(keepends=True)[:2500]
        proc.stdin.write(b"".join(lines) + b"garbage\n")
        proc.stdin.flush()
        body = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                if 'nlpmon_events_consumed_total 2501.0' in body:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert 'nlpmon_events_consumed_total 2501.0' in body
        assert 'nlpmon_events_invalid_total{reason="malformed_json"} 1.0' in body
        assert 'nlp_window_events{model="sentiment",version="1"} 1000.0' in body
        status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2).read())
        assert status["stats"]["valid"] == 2500 and status["windows"][0]["model"] == "sentiment"
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
        # raw text never reaches the metrics
        assert json.loads(lines[0])["text"] not in body
    finally:
        out, err = proc.communicate(timeout=30)  # closes stdin: end of input
    assert proc.returncode == 0
    assert len(out.splitlines()) == 3  # two full count windows + the partial flush
    assert json.loads(out.splitlines()[-1])["partial"] is True


def test_run_daemon_follows_file_and_drains_on_sigterm(drifting, tmp_path):
    d, _ = drifting
    log = tmp_path / "predictions.jsonl"
    log.write_bytes(b"")
    results = tmp_path / "results.jsonl"
    port = free_port()
    cfg = tmp_path / "nlpmon.toml"
    cfg.write_text(
        f'[source]\nkind = "file"\npath = "{log}"\nfollow = true\npoll_interval_seconds = 0.05\n'
        f'[window]\nkind = "count"\nevents = 500\nmin_events = 100\n[reference]\npaths = ["{d / "profile.json"}"]\n'
        f'[metrics]\nhost = "127.0.0.1"\nport = {port}\n[output]\nresults_path = "{results}"\n'
        f'[logging]\nformat = "json"\n'
    )
    proc = subprocess.Popen(nlpmon() + ["run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = (d / "live.jsonl").read_bytes().splitlines(keepends=True)
        with open(log, "ab") as f:
            f.write(b"".join(lines[:1200]))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(results.read_bytes().splitlines() if results.exists() else []) < 2:
            time.sleep(0.1)
        assert len(results.read_bytes().splitlines()) == 2  # 1200 events: two full windows of 500 so far
        ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
        assert ready.status == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    out = [json.loads(line) for line in results.read_bytes().splitlines()]
    assert [r["events"] for r in out] == [500, 500, 200] and out[-1]["partial"]
    logs = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert any(entry["msg"] == "window closed" for entry in logs)
    assert any(entry["msg"].startswith("shutdown requested") for entry in logs)
    texts = {json.loads(line)["text"] for line in lines[:50]}
    assert not any(t in err.decode() for t in texts)  # never raw text in logs


def test_a_lone_surrogate_in_a_text_neither_stops_the_replay_nor_loses_the_event(tmp_path):
    # The record that used to end `nlpmon replay` with a UnicodeEncodeError (a string cut mid-emoji).
    good = [json.dumps({"ts": 1_764_000_000_000 + i, "model": "m", "prediction": "p", "text": f"fine text {i}"})
            for i in range(40)]
    bad = '{"ts": 1764000000100, "model": "m", "prediction": "p", "text": "bad \\ud800 text"}'
    (tmp_path / "e.jsonl").write_text("\n".join(good[:20] + [bad] + good[20:]) + "\n")
    out = subprocess.run(nlpmon() + ["replay", str(tmp_path / "e.jsonl"), "--window-events", "41"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["events"] for r in results] == [41]
    assert json.loads(out.stderr.strip().splitlines()[-1])["invalid"] == 0
