"""Prediction-log events produced live to Kafka, stamped with the wall clock, clean until told to drift.

Windows are cut by event time, so stamping each event with the time it is sent makes windows close in real
time and lets Prometheus scrape them as they close, as in production.
"""

from __future__ import annotations

import json
import threading
import time

from kafka import KafkaProducer

from monitor.devkit.synth.traffic import generate_events

__all__ = ["LiveTraffic"]

_TICK_S = 0.02
_EVENTS_PER_STREAM = 1_000_000  # generate_events is lazy; a bound only


class LiveTraffic:
    """Send ``rate_per_s`` events a second from a background thread until :meth:`stop`.

    Events come from :func:`monitor.devkit.synth.traffic.generate_events` (clean, or drifted after
    :meth:`start_drift`) with ``ts`` replaced by the current time in milliseconds.
    """

    def __init__(self, bootstrap: str, topic: str, *, rate_per_s: float, seed: int, label_share: float = 0.0,
                 variants: dict[str, float] | None = None, shadow_share: float = 0.0, embedding_dim: int = 0,
                 label_event_share: float = 0.0):
        self.topic = topic
        self.rate_per_s = rate_per_s
        self.sent = 0
        self.drift_started_at: float | None = None  # wall time of the first drifted event
        # variants/shadow_share: an A/B split and shadow predictions (generate_events); a shadow event is sent
        # right after its served one, stamped with the same wall-clock time plus its generated delay.
        kw = {"label_share": label_share, "variants": variants, "shadow_share": shadow_share,
              "embedding_dim": embedding_dim, "label_event_share": label_event_share}
        self._clean = generate_events(_EVENTS_PER_STREAM, seed=seed, **kw)
        self._drifted = generate_events(_EVENTS_PER_STREAM, seed=seed + 1, drift_after=0, **kw)
        self._last_served: tuple[int, int] | None = None  # (generated ts, wall ts) of the latest served event
        self._drift = threading.Event()
        self._stop = threading.Event()
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-traffic", daemon=True)

    def start(self) -> "LiveTraffic":
        self._thread.start()
        return self

    def start_drift(self) -> float:
        """Make every later event drifted; return the wall time from which events are drifted."""
        self._drift.set()
        while self.drift_started_at is None and self._thread.is_alive():
            time.sleep(_TICK_S / 2)
        self.check()
        return self.drift_started_at

    def send(self, event: dict) -> None:
        """Send one event as it is (e.g. a late one), keyed by model like the rest."""
        self._producer.send(self.topic, key=event["model"].encode(), value=json.dumps(event).encode())

    def check(self) -> None:
        """Raise the producer thread's error, if it had one."""
        if self._error is not None:
            raise AssertionError(f"the live producer failed: {self._error!r}") from self._error

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        try:
            self._producer.flush(10)
        finally:
            self._producer.close(timeout=5)

    def _run(self) -> None:
        try:
            started = time.monotonic()
            while not self._stop.is_set():
                due = int((time.monotonic() - started) * self.rate_per_s) - self.sent
                for _ in range(due):
                    drifted = self._drift.is_set()
                    event = next(self._drifted if drifted else self._clean)
                    now = time.time()
                    if drifted and self.drift_started_at is None:
                        self.drift_started_at = now
                    # A shadow event and a label event (kind "label", due after its prediction) keep their
                    # generated offset from the latest served event.
                    if (event.get("variant") == "shadow" or event.get("kind") == "label") and self._last_served is not None:
                        generated, wall = self._last_served
                        event["ts"] = wall + (event["ts"] - generated)
                    else:
                        self._last_served = (event["ts"], int(now * 1000))
                        event["ts"] = int(now * 1000)
                    self.send(event)
                    self.sent += 1
                time.sleep(_TICK_S)
        except BaseException as exc:  # reported to the test through check()
            self._error = exc
