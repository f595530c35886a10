"""The Kafka daemon's optional output and dead-letter topics: best effort, after the SQL commit (docs/kafka.md).

What a checkpoint made durable is queued here and sent without ever blocking the consuming loop: a send may
wait at most :data:`MAX_BLOCK_MS` for the topic's metadata, acknowledgements are collected on later steps,
and a record that could not be sent (no broker, the topic refused or missing, a delivery timeout) goes back
to the front of the queue and is retried with backoff (0.5 s doubling to :data:`MAX_RETRY_S`). The queue is
bounded (:data:`MAX_UNSENT` records); past it the oldest records are dropped and counted. The SQL store holds
every result either way: these topics are a convenience feed, never the record of truth.

Said once per change, per topic kind (``output``, ``dead_letter``): a warning when sending starts failing,
an info line when it works again; ``nlpmon_publish_errors_total{topic_kind}``,
``nlpmon_publish_dropped_total{topic_kind}`` and ``nlpmon_publish_unsent{topic_kind}``; ``/readyz`` and
``/status`` show the reason under ``degraded`` (ready stays true: the results are durable already).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from monitor.logs import log_event
from sinks.prometheus import PrometheusSink

__all__ = ["KINDS", "MAX_UNSENT", "Outgoing", "Publisher"]

KINDS = ("output", "dead_letter")
MAX_UNSENT = 10_000  # records waiting (queued or in flight) before the oldest are dropped
MAX_IN_FLIGHT = 1_000  # records handed to the producer and not yet acknowledged
MAX_BLOCK_MS = 200  # the longest one send may wait (for the topic's metadata or buffer space)
INITIAL_RETRY_S = 0.5
MAX_RETRY_S = 30.0
# The producer's own limits, so that an unanswered record fails (and is retried here) within half a minute.
PRODUCER_SETTINGS = {"acks": "all", "linger_ms": 20, "max_block_ms": MAX_BLOCK_MS, "request_timeout_ms": 10_000,
                     "delivery_timeout_ms": 30_000}


@dataclass(frozen=True)
class Outgoing:
    """One record for the output or the dead-letter topic."""

    kind: str  # one of KINDS
    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class Publisher:
    """A bounded queue of records for the output and dead-letter topics, sent with backoff by :meth:`pump`."""

    def __init__(self, sink: PrometheusSink, *, connect: Callable[[], object], clock: Callable[[], float]):
        self.sink = sink
        self._connect = connect  # one short try at a producer; raises when no broker answers
        self._clock = clock
        self.producer = None
        self.unsent: deque[Outgoing] = deque()
        self.in_flight: deque[tuple[Outgoing, object]] = deque()  # (record, kafka future), oldest first
        self.failing: dict[str, str] = {}  # topic kind -> why sending fails now (the degraded reason)
        self.errors = dict.fromkeys(KINDS, 0)
        self.dropped = dict.fromkeys(KINDS, 0)
        self.retry_at = 0.0
        self.retry_delay = INITIAL_RETRY_S
        self._gauges()

    # -- queueing and sending ----------------------------------------------------------------------------------
    def add(self, records) -> None:
        """Queue records to send; past :data:`MAX_UNSENT` waiting, drop (and count) the oldest."""
        self.unsent.extend(records)
        while self.unsent and len(self.unsent) + len(self.in_flight) > MAX_UNSENT:
            self.dropped[self.unsent.popleft().kind] += 1
        self._gauges()

    def pump(self) -> None:
        """Collect acknowledgements, then send what waits unless a backoff runs; never raises, never blocks long."""
        self._reap()
        if self.unsent and self._clock() >= self.retry_at and self._producer():
            while self.unsent and len(self.in_flight) < MAX_IN_FLIGHT:
                item = self.unsent[0]
                try:
                    future = self.producer.send(item.topic, value=item.value, key=item.key, headers=list(item.headers))
                except Exception as exc:  # no metadata within MAX_BLOCK_MS, buffer full, a refused topic
                    self._failed(item.kind, exc)
                    break
                self.unsent.popleft()
                self.in_flight.append((item, future))
        self._gauges()

    def _producer(self) -> bool:
        if self.producer is not None:
            return True
        try:
            self.producer = self._connect()
            return True
        except Exception as exc:
            for kind in {item.kind for item in self.unsent}:
                self._failed(kind, exc)
            return False

    def _reap(self) -> None:
        """Take the finished sends off the in-flight list; failed ones go back to the front of the queue."""
        retry, still = [], deque()
        for item, future in self.in_flight:
            if not future.is_done:
                still.append((item, future))
            elif future.failed():
                retry.append(item)
                self._failed(item.kind, future.exception)
            else:
                self._sent(item.kind)
        self.in_flight = still
        self.unsent.extendleft(reversed(retry))

    def _failed(self, kind: str, exc: BaseException) -> None:
        name, text = type(exc).__name__, str(exc)
        reason = (text if text.startswith(name) else f"{name}: {text}")[:200]  # kafka's errors name themselves
        self.errors[kind] += 1
        if kind not in self.failing:
            log_event(logging.WARNING, f"{kind.replace('_', '-')} topic unavailable; records wait and are sent again "
                      "with backoff (the SQL store has the results)", error=reason, unsent=len(self.unsent))
        self.failing[kind] = reason
        self.retry_at = self._clock() + self.retry_delay
        self.retry_delay = min(self.retry_delay * 2, MAX_RETRY_S)

    def _sent(self, kind: str) -> None:
        if kind in self.failing:
            del self.failing[kind]
            log_event(logging.INFO, f"{kind.replace('_', '-')} topic available again", dropped=self.dropped[kind])
        if not self.failing:
            self.retry_delay = INITIAL_RETRY_S

    # -- what the probes read ----------------------------------------------------------------------------------
    def degraded(self) -> dict[str, str]:
        """Why records of a topic kind are not sent now (empty when all go out)."""
        return {f"{kind}_topic": why for kind, why in sorted(self.failing.items())}

    def waiting(self) -> dict[str, int]:
        out = dict.fromkeys(KINDS, 0)
        for item in self.unsent:
            out[item.kind] += 1
        for item, _ in self.in_flight:
            out[item.kind] += 1
        return out

    def _gauges(self) -> None:
        s = self.sink
        for kind, n in self.waiting().items():
            s.set_gauge("nlpmon_publish_unsent", "Records waiting for the output or dead-letter topic.", float(n),
                        topic_kind=kind)
            s.set_counter("nlpmon_publish_errors", "Failed sends (or producer connections) to the output or "
                          "dead-letter topic; each is retried.", float(self.errors[kind]), topic_kind=kind)
            s.set_counter("nlpmon_publish_dropped", "Records for the output or dead-letter topic dropped: the queue "
                          "was full, or the daemon stopped before the broker took them.", float(self.dropped[kind]),
                          topic_kind=kind)

    # -- stop ---------------------------------------------------------------------------------------------------
    def close(self, *, timeout_s: float) -> None:
        """Send what waits within ``timeout_s`` (one try, no backoff), then close; count and say what is left."""
        if self.producer is not None and self.unsent and not self.failing:
            self.pump()
        if self.producer is not None and self.in_flight:
            with contextlib.suppress(Exception):
                self.producer.flush(timeout=timeout_s)
            self._reap()
        left = self.waiting()
        for kind, n in left.items():
            self.dropped[kind] += n
        if any(left.values()):
            log_event(logging.WARNING, "stopped with records not sent to the output or dead-letter topic "
                      "(the SQL store has the results)", **{f"{k}_unsent": n for k, n in left.items()})
        self.unsent.clear()
        self.in_flight.clear()
        self._gauges()
        if self.producer is not None:
            with contextlib.suppress(Exception):
                self.producer.close(timeout=timeout_s)
