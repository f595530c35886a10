"""Stopping a daemon: signal handlers that only set flags, and the one documented shutdown order.

The first SIGTERM/SIGINT sets :attr:`Shutdown.should_exit`; the daemon's loop sees it and stops in this order
(uvicorn's ``Server`` pattern):

- line daemon (file, stdin): stop reading → flush open windows (``partial``) → write their results (output,
  store) → flush the dead-letter file → stop the HTTP server;
- Kafka sidecar: stop polling → final checkpoint within ``daemon.grace_seconds`` (results, offsets and window
  state in one transaction) → commit Kafka offsets, send dead letters and output records → close the producer,
  the consumer (leaving the group), the re-evaluation worker, the HTTP server and the store, in the reverse
  order of opening (one ``ExitStack``).

A second signal sets :attr:`Shutdown.force_exit`. The handler only sets flags (logging from a handler can
deadlock on a lock held by the code it interrupted): a watcher thread, started by :meth:`Shutdown.install`,
logs "shutdown requested, draining" when the first signal arrives (at once, even while the main loop is
inside a long checkpoint) and, on the second, ends the process at once with 128 + the signal number (130 for
SIGINT, 143 for SIGTERM), so that a drain blocked in a database call or a read cannot hold the process past
an operator's second signal. Durable state stays consistent: a checkpoint is one transaction,
and the next start resumes from the last one that committed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass, field

from monitor.logs import log_event

__all__ = ["Shutdown"]


@dataclass
class Shutdown:
    """The two flags a signal may set; the daemons' loops act on them."""

    should_exit: bool = False
    force_exit: bool = False
    signal_name: str | None = None  # of the first signal, for the drain's log line
    _exit_code: int = 143
    _previous: dict = field(default_factory=dict)
    _wake: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None

    def install(self) -> "Shutdown":
        """Install the handlers (main thread only) and the watcher that logs the drain and honours :attr:`force_exit`."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="nlpmon-shutdown", daemon=True)
                self._watcher.start()
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        # Flags only: no logging, no I/O (their locks may be held by the code this signal interrupted).
        if self.should_exit:
            self._exit_code = 128 + signum
            self.force_exit = True
        else:
            self.signal_name = signal.Signals(signum).name
            self.should_exit = True
        self._wake.set()

    def _watch(self) -> None:
        logged = False
        while True:
            self._wake.wait()
            self._wake.clear()
            if self.force_exit:
                log_event(logging.WARNING, "second signal: exiting now without draining")
                logging.shutdown()
                os._exit(self._exit_code)
            if self.should_exit and not logged:
                logged = True
                log_event(logging.INFO, "shutdown requested, draining", signal=self.signal_name or "-")
