"""Run ``nlpmon run`` against the test broker as a real subprocess, and inspect what it made durable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaProducer

from sinks.sql import SqlStore

T0_MS = 1_764_000_000_000


def nlpmon() -> list[str]:
    exe = shutil.which("nlpmon", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "monitor.cli"]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, proc: "DaemonProcess | None" = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.popen.poll() is not None:
            raise AssertionError(f"daemon exited ({proc.popen.returncode}) while waiting for {what}:\n{proc.log_tail()}")
        time.sleep(0.1)
    tail = proc.log_tail() if proc else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")


def http_status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        return urllib.request.urlopen(url, timeout=2).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def produce(bootstrap: str, topic: str, events: list[dict], raw: list[bytes] = (),
            key_of: Callable[[dict], str] | None = None) -> dict[int, int]:
    """Send events keyed by model (or ``key_of(event)``), raw records keyed b'sentiment'; return {partition: next offset}."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    ends: dict[int, int] = {}
    key = key_of or (lambda e: e["model"])
    futures = [producer.send(topic, key=key(e).encode(), value=json.dumps(e).encode()) for e in events]
    futures += [producer.send(topic, key=b"sentiment", value=r) for r in raw]
    producer.flush(30)
    for f in futures:
        md = f.get(timeout=30)
        ends[md.partition] = max(ends.get(md.partition, 0), md.offset + 1)
    producer.close()
    return ends


def write_config(path: Path, *, bootstrap: str, topic: str, group: str, store_url: str, profile: Path | None,
                 extra: str = "") -> Path:
    ref = f'[reference]\npaths = ["{profile}"]\n' if profile else ""
    path.write_text(
        f'[source]\nkind = "kafka"\n'
        f'[kafka]\nbootstrap_servers = ["{bootstrap}"]\ntopics = ["{topic}"]\ngroup_id = "{group}"\n'
        f'session_timeout_ms = 2000\npoll_timeout_ms = 100\nmax_poll_records = 250\n'
        f'[store]\nurl = "{store_url}"\n'
        f'[window]\nsize_seconds = 30\nlateness_seconds = 5\nmin_events = 50\n'
        f'[checkpoint]\ninterval_events = 400\ninterval_seconds = 0.3\n'
        f'[metrics]\nhost = "127.0.0.1"\nport = 0\n'
        f'[logging]\nformat = "json"\nlevel = "debug"\n' + ref + extra
    )
    return path


class DaemonProcess:
    """``nlpmon run`` in a subprocess; stderr (JSON logs) goes to a file the test can read."""

    def __init__(self, config: Path, log: Path, env: dict | None = None, checkpoint_pause: float | None = None,
                 poison: str | None = None, producer_bootstrap: str | None = None):
        self.log = log
        self._f = open(log, "ab")
        # checkpoint_pause: hold every checkpoint transaction open that long (tests/monitor/runtime/paused_daemon.py);
        # poison: the featurizer raises on events whose text holds this marker (poison_daemon.py).
        # producer_bootstrap: the output/dead-letter producer talks to this address instead (refusing_output_daemon.py).
        if producer_bootstrap is not None:
            cmd = [sys.executable, "-m", "tests.monitor.runtime.refusing_output_daemon", producer_bootstrap, str(config)]
        elif poison is not None:
            cmd = [sys.executable, "-m", "tests.monitor.runtime.poison_daemon", poison, str(config), str(checkpoint_pause or 0)]
        elif checkpoint_pause is not None:
            cmd = [sys.executable, "-m", "tests.monitor.runtime.paused_daemon", str(checkpoint_pause), str(config)]
        else:
            cmd = nlpmon() + ["run", "--config", str(config)]
        self.popen = subprocess.Popen(cmd, stdout=self._f, stderr=self._f, env={**os.environ, **(env or {})})

    def logs(self) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)
        self._f.close()

    def stop(self, timeout: float = 30) -> int:
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        finally:
            self._f.close()

    def __enter__(self) -> "DaemonProcess":
        return self

    def __exit__(self, *exc) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        if not self._f.closed:
            self._f.close()


def committed(store_url: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    with SqlStore(store_url) as store:
        cps = store.load_checkpoints(group, [(topic, p) for p in range(partitions)])
    return {p: off for (_, p), (off, _) in cps.items()}


def caught_up(store_url: str, group: str, topic: str, ends: dict[int, int]) -> bool:
    try:
        done = committed(store_url, group, topic, max(ends) + 1)
    except Exception:
        return False
    return all(done.get(p, 0) >= end for p, end in ends.items())


def all_results(store_url: str, models: list[str]) -> list[dict]:
    with SqlStore(store_url) as store:
        return [r for m in models for r in store.history(m)]
