"""wait_for (runtime/startup.py): a try that hangs cannot hold a shutdown; a try's own error is raised as is."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from monitor.runtime.shutdown import Shutdown
from monitor.runtime.startup import NotYet, Waiting, wait_for
from sinks.prometheus import PrometheusSink


def _waiting() -> Waiting:
    return Waiting(PrometheusSink(CollectorRegistry()))


def test_a_hanging_try_is_abandoned_at_shutdown():
    shutdown, release = Shutdown(), threading.Event()
    threading.Timer(0.3, lambda: setattr(shutdown, "should_exit", True)).start()
    started = time.monotonic()
    # as a connection try to a database whose packets are dropped: it would hang for connect_timeout
    assert wait_for("database", lambda: release.wait(30), shutdown=shutdown, waiting=_waiting()) is None
    assert time.monotonic() - started < 1.0
    release.set()


def test_not_yet_then_the_value():
    tries = iter([NotYet("down"), 42])

    def attempt():
        value = next(tries)
        if isinstance(value, Exception):
            raise value
        return value

    waiting = _waiting()
    assert wait_for("database", attempt, shutdown=Shutdown(), waiting=waiting) == 42 and not waiting.reasons


def test_another_error_is_raised_as_is():
    def attempt():
        raise ValueError("schema behind")

    with pytest.raises(ValueError, match="schema behind"):
        wait_for("database", attempt, shutdown=Shutdown(), waiting=_waiting())
