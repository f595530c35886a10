"""Liveness: the heartbeat of a daemon's loop, read by ``/healthz`` (docs/kafka.md, "Probes").

The loop calls :meth:`Heartbeat.beat` on every iteration. ``/healthz`` fails (503, one line) when no beat came
for ``probe.stall_seconds`` while the loop is not in a legitimate wait. Legitimate waits are what readiness
(``/readyz``) reports, never a reason to restart the process: the loop marks them with :meth:`Heartbeat.waiting`
(a checkpoint transaction waiting on the database, a Kafka commit or flush waiting on the broker, a line source
waiting for input). A wait that ends counts as progress. kafka-python's ``poll`` returns within its timeout even
while the broker is down, so an outage keeps the loop beating by itself; the ``[embedding]`` worker beats for
the loop while the loop waits for it at a barrier (:mod:`monitor.runtime.embedding_worker`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["Heartbeat"]


class Heartbeat:
    """The monotonic time of the loop's last progress, and the legitimate waits it is in now."""

    def __init__(self, stall_seconds: float, *, clock: Callable[[], float] = time.monotonic, loop: str = "consume loop"):
        self.stall_seconds = stall_seconds
        self.loop = loop
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()
        self._waits: list[str] = []  # innermost last; a rebalance callback may nest in a poll's wait

    def beat(self) -> None:
        """The loop made progress (any thread may call it)."""
        self._last = self._clock()

    @contextlib.contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        """A legitimate wait (``what``: e.g. ``database``): liveness holds while inside, and its end is progress."""
        with self._lock:
            self._waits.append(what)
        try:
            yield
        finally:
            with self._lock:
                self._waits.remove(what)
            self.beat()

    @property
    def idle_seconds(self) -> float:
        """Seconds since the last progress."""
        return max(0.0, self._clock() - self._last)

    def check(self) -> tuple[bool, str]:
        """``(alive, one-line reason)`` for ``/healthz``."""
        with self._lock:
            waits = list(self._waits)
        idle = self.idle_seconds
        if waits:
            return True, f"ok: waiting on {waits[-1]} for {idle:.0f} s"
        if idle >= self.stall_seconds:
            return False, (f"stalled: the {self.loop} has made no progress for {idle:.0f} s "
                           f"(probe.stall_seconds = {self.stall_seconds:g})")
        return True, "ok"

    def status(self) -> dict:
        """For ``/status``: seconds since the last progress and the current wait."""
        with self._lock:
            waits = list(self._waits)
        return {"alive": self.check()[0], "seconds_since_progress": round(self.idle_seconds, 3),
                "waiting_on": waits[-1] if waits else None, "stall_seconds": self.stall_seconds}
