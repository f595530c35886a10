"""Waiting for the outside world: broker, topic, group coordinator, database, in any order (docs/kafka.md).

A part that is not there yet is waited for with backoff; nothing exits and nothing raises a traceback. Each
try runs on a helper thread, so that one that hangs (a database whose packets are dropped) cannot hold a
shutdown. Each change of what the daemon waits for is said once: one log line ("waiting for <part>", then
"<part> ready"), the gauge ``nlpmon_waiting{for="<part>"}`` and the reason in ``/readyz``. A first
SIGTERM/SIGINT ends the wait within a fraction of a second. A deadline exists only when the user sets one
(``kafka.startup_timeout_seconds``, ``store.startup_timeout_seconds``); past it, :class:`StartupTimeout`
(exit 2, one line).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from monitor.logs import log_event
from monitor.runtime.shutdown import Shutdown
from sinks.prometheus import PrometheusSink

__all__ = ["PARTS", "NotYet", "StartupTimeout", "Waiting", "wait_for", "sleep_unless_stopped"]

T = TypeVar("T")

# What the daemon may wait for: the label values of nlpmon_waiting.
PARTS = ("broker", "topic", "group_coordinator", "database")
INITIAL_DELAY_S = 0.5
MAX_DELAY_S = 10.0
_TICK_S = 0.1  # how often a sleeping wait looks at the shutdown flag


class NotYet(Exception):
    """A part is not there yet; the message says what is missing (no secrets, no input text)."""


class StartupTimeout(Exception):
    """A part was not there within the startup deadline the user set: exit 2 with this one line."""


class Waiting:
    """What the daemon waits for now (part -> reason): one log line per change, a gauge, /readyz's reason."""

    def __init__(self, sink: PrometheusSink, *, clock: Callable[[], float] = time.monotonic):
        self.sink = sink
        self._clock = clock
        self.reasons: dict[str, str] = {}
        self._since: dict[str, float] = {}
        self._seen: set[str] = set()  # parts that were there once: "ready again" after a loss
        for part in PARTS:
            self._gauge(part, 0.0)

    def wait(self, part: str, reason: str) -> None:
        """``part`` is missing for ``reason``: say so when this is news."""
        reason = " ".join(reason.split())[:300]  # one line (drivers' messages span several)
        if self.reasons.get(part) == reason:
            return
        if part not in self.reasons:
            self._since[part] = self._clock()
        self.reasons[part] = reason
        self._gauge(part, 1.0)
        log_event(logging.WARNING, f"waiting for {part.replace('_', ' ')}", reason=reason)

    def ready(self, part: str) -> None:
        """``part`` is there: say so once, with how long it was waited for."""
        if part not in self.reasons:
            self._seen.add(part)
            return
        del self.reasons[part]
        waited = self._clock() - self._since.pop(part)
        self._gauge(part, 0.0)
        again = " again" if part in self._seen else ""
        self._seen.add(part)
        log_event(logging.INFO, f"{part.replace('_', ' ')} ready{again}", waited_seconds=round(waited, 1))

    def reason(self) -> str | None:
        """One line for /readyz: every part waited for, with its reason; None when nothing is."""
        if not self.reasons:
            return None
        return "; ".join(f"waiting for {part.replace('_', ' ')}: {why}" for part, why in sorted(self.reasons.items()))

    def _gauge(self, part: str, value: float) -> None:
        self.sink.set_gauge("nlpmon_waiting", "1 while the daemon waits for this part (broker, topic, group_coordinator, "
                            "database) to be there.", value, **{"for": part})


def sleep_unless_stopped(seconds: float, shutdown: Shutdown) -> bool:
    """Sleep up to ``seconds``, returning early (False) as soon as a shutdown is requested."""
    end = time.monotonic() + seconds
    while not shutdown.should_exit:
        left = end - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, _TICK_S))
    return False


class _Abandoned(Exception):
    """A shutdown came while a try was still running: the try is left to finish on its own."""


def _try(attempt: Callable[[], T], shutdown: Shutdown) -> T:
    """Run one ``attempt`` on a helper thread and wait for it, looking at the shutdown flag every 0.1 s.

    A try may hang far longer than its backoff: a database whose packets are dropped holds a connection try
    for its whole ``connect_timeout`` (10 s). On shutdown the try is abandoned (a daemon thread, ended with
    the process); whatever it raises otherwise is raised here.
    """
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = attempt()
        except BaseException as exc:  # handed to the waiting thread as is
            box["error"] = exc

    helper = threading.Thread(target=run, name="nlpmon-startup-try", daemon=True)
    helper.start()
    while helper.is_alive():
        helper.join(_TICK_S)
        if shutdown.should_exit and helper.is_alive():
            raise _Abandoned
    if "error" in box:
        raise box["error"]
    return box["value"]


def wait_for(part: str, attempt: Callable[[], T], *, shutdown: Shutdown, waiting: Waiting,
             timeout_s: float = 0.0) -> T | None:
    """Call ``attempt`` until it returns (its value) instead of raising :class:`NotYet`, with backoff.

    Returns None when a shutdown is requested first. ``timeout_s`` > 0: raise :class:`StartupTimeout` once
    that long has passed without success (0: wait as long as it takes).
    """
    delay = INITIAL_DELAY_S
    started = time.monotonic()
    while not shutdown.should_exit:
        try:
            value = _try(attempt, shutdown)
        except _Abandoned:
            break
        except NotYet as exc:
            waiting.wait(part, str(exc))
            waited = time.monotonic() - started
            if timeout_s and waited >= timeout_s:
                raise StartupTimeout(f"{part.replace('_', ' ')} not there after {waited:.0f} s ({exc}); "
                                     f"the startup deadline is {timeout_s:g} s") from None
            pause = delay if not timeout_s else min(delay, max(0.0, timeout_s - waited))
            if not sleep_unless_stopped(pause, shutdown):
                break
            delay = min(delay * 2, MAX_DELAY_S)
            continue
        waiting.ready(part)
        return value
    return None
