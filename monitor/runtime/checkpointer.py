"""The Kafka daemon's one exactly-once transaction, and what may happen only after it (docs/kafka.md).

ONE SQL transaction (:meth:`sinks.sql.SqlStore.commit`) writes the waiting results and, for every partition,
the next offset to consume with the serialized state of its pipeline. Results are keyed by (model, version,
window_start), so writing one twice is harmless. Only after that commit are Kafka offsets committed (for lag
dashboards only), rejected records sent to the dead-letter topic and results published to the output topic:
best effort, through a bounded queue that never blocks the loop (:mod:`monitor.runtime.publisher`).

If the database is unreachable, everything stays in memory and the commit is retried with exponential backoff
(``checkpoint.retry_max_seconds``); the daemon pauses consumption meanwhile once too much is waiting.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from enum import Enum

import msgspec

from monitor.config import Config
from monitor.logs import log_event
from monitor.runtime.consumer import connect_client
from monitor.runtime.partitions import PartitionState
from monitor.runtime.publisher import PRODUCER_SETTINGS, Outgoing, Publisher
from sinks.prometheus import PrometheusSink
from sinks.sql import CheckpointConflict, SqlStore, StoreUnavailable

__all__ = ["Checkpointer", "Outcome"]

INITIAL_RETRY_S = 0.5
PUBLISH_CLOSE_S = 2.0  # at stop: how long the output and dead-letter records still waiting may take


class Outcome(Enum):
    """How a checkpoint ended."""

    COMMITTED = "committed"
    UNAVAILABLE = "unavailable"  # the database did not answer: everything stays, retried with backoff
    CONFLICT = "conflict"  # another consumer owns these partitions now: the caller drops their state


class Checkpointer:
    """Make partitions durable in one transaction, then publish; track whether the database answers."""

    def __init__(self, config: Config, sink: PrometheusSink, *, clock: Callable[[], float],
                 before_commit: Callable[[], None] | None = None):
        self.config = config
        self.sink = sink
        self._clock = clock
        # Called inside each checkpoint transaction just before it commits: fault injection for the crash
        # tests (a SIGKILL that lands mid-transaction); None in production.
        self._before_commit = before_commit
        self.store: SqlStore | None = None
        self.publisher: Publisher | None = None  # with a dead-letter or output topic
        self.producer_overrides: dict = {}  # kafka-python settings over the shared ones (the tests' refusing broker)
        self.db_connected = False
        self._db_lost = False  # set when the database stops answering: the next contact is "reachable again"
        self.retry_at = 0.0
        self.retry_delay = INITIAL_RETRY_S
        self.last_checkpoint = clock()
        # Work that must wait for the main loop: kafka-python runs rebalance callbacks on its IO thread, where
        # blocking client calls (commit, producer flush) are refused.
        self._to_publish: list[tuple[dict, list, list]] = []  # (offsets, dead letters, results)

    def open_store(self, stack: contextlib.ExitStack) -> SqlStore:
        # store.auto_upgrade off: a schema behind raises SchemaBehind, naming `nlpmon db upgrade` (exit 2, one line)
        self.store = SqlStore(self.config.store.url, upgrade=self.config.store.auto_upgrade)
        stack.callback(self.store.close)
        return self.store

    def open_producer(self, stack: contextlib.ExitStack, client_config: dict) -> None:
        """The publisher for the dead-letter and output topics (none when neither is configured). Its producer
        connects on the first send and again with backoff after a failure: never a wait, never an exit."""
        k = self.config.kafka
        if not (k.dead_letter_topic or k.output_topic):
            return
        from kafka import KafkaProducer

        config = {**client_config, **self.producer_overrides}
        self.publisher = Publisher(self.sink, clock=self._clock,
                                   connect=lambda: connect_client(KafkaProducer, config, **PRODUCER_SETTINGS))
        stack.callback(lambda: self.publisher.close(timeout_s=PUBLISH_CLOSE_S))

    def commit(self, dirty: list[tuple[object, PartitionState]], *, reason: str) -> Outcome:
        """Write the dirty partitions' results, offsets and pipeline states in one transaction."""
        if not dirty:  # nothing new since the last one: that one still covers everything
            self.last_checkpoint = self._clock()
            return Outcome.COMMITTED
        results = [r for _, p in dirty for r in p.pending]
        checkpoints = {(tp.topic, tp.partition): p.checkpoint() for tp, p in dirty}
        expected = {(tp.topic, tp.partition): p.committed_offset for tp, p in dirty}
        started = self._clock()
        try:
            self.store.commit(
                self.config.kafka.group_id, results=results, checkpoints=checkpoints, expected_offsets=expected,
                before_commit=self._before_commit,
                experiment_results=[r for _, p in dirty for r in p.pending_experiments],
                shadow_results=[r for _, p in dirty for r in p.pending_shadow],
                label_results=[r for _, p in dirty for r in p.pending_labels],
            )  # fmt: skip
        except StoreUnavailable as exc:
            self.db_down(exc)
            return Outcome.UNAVAILABLE
        except CheckpointConflict as exc:
            # Another consumer owns these partitions now (this one was fenced out, e.g. after a long stall):
            # drop their state; the new owner resumes from its own checkpoint. Never overwrite it.
            log_event(logging.ERROR, "checkpoint conflict: partitions taken over by another consumer", detail=str(exc))
            return Outcome.CONFLICT
        self.db_up()
        self._after_commit(dirty, results)
        self.last_checkpoint = self._clock()
        self.sink.set_gauge("nlpmon_checkpoint_duration_seconds", "Duration of the last checkpoint transaction.", self._clock() - started)
        self.sink.set_gauge("nlpmon_checkpoint_results", "Window results written by the last checkpoint.", len(results))
        log_event(logging.DEBUG, "checkpoint", reason=reason, partitions=len(dirty), results=len(results))
        return Outcome.COMMITTED

    def _after_commit(self, dirty, results) -> None:
        from kafka.structs import OffsetAndMetadata

        offsets = {tp: OffsetAndMetadata(p.next_offset, "", -1) for tp, p in dirty}
        dead = [d for _, p in dirty for d in p.dead_letters]
        self._to_publish.append((offsets, dead, list(results)))
        for _, p in dirty:
            p.made_durable()

    def db_up(self) -> None:
        """The database answered: "reachable again" only after it was lost (never at the first contact)."""
        if not self.db_connected and self._db_lost:
            log_event(logging.INFO, "database reachable again")
        self.db_connected = True
        self._db_lost = False
        self.retry_delay = INITIAL_RETRY_S

    def db_down(self, exc: Exception) -> None:
        """The database did not answer: say so once, and back off before the next try."""
        if self.db_connected or self.retry_delay <= INITIAL_RETRY_S:
            log_event(logging.WARNING, "database unreachable; results wait in memory", error=str(exc)[:200])
        self.db_connected = False
        self._db_lost = True
        self.retry_at = self._clock() + self.retry_delay
        self.retry_delay = min(self.retry_delay * 2, self.config.checkpoint.retry_max_seconds)

    def publish(self, consumer, assigned) -> None:
        """After a durable checkpoint: commit Kafka offsets of the partitions still ``assigned`` (lag visibility
        only), send dead letters and results."""
        if not self._to_publish:
            if self.publisher is not None:
                self.publisher.pump()  # what waits from earlier checkpoints: acknowledgements, retries
            return
        batches, self._to_publish = self._to_publish, []
        offsets = {}
        for o, _, _ in batches:
            offsets.update({tp: v for tp, v in o.items() if tp in assigned})
        if offsets:
            try:
                consumer.commit(offsets)
            except Exception as exc:
                log_event(logging.WARNING, "kafka offset commit failed (lag metrics may lag)", error=type(exc).__name__)
        if self.publisher is None:
            return
        k = self.config.kafka
        # Best effort, after the checkpoint (docs/kafka.md, "Output and dead-letter topics"): queued, sent with
        # backoff by the publisher without blocking this loop; the SQL store has every result either way.
        for _, dead, results in batches:
            self.publisher.add(Outgoing("dead_letter", k.dead_letter_topic, raw, headers=(
                ("nlpmon-reason", reason.encode()), ("nlpmon-detail", detail.encode()),
                ("nlpmon-source", position.encode()))) for raw, reason, detail, position in dead)  # fmt: skip
            self.sink.count_dead_letter(len(dead))
            if k.output_topic:
                # The output topic is an edge where JSON leaves the process (docs/results.md).
                self.publisher.add(Outgoing("output", k.output_topic, msgspec.json.encode(r.to_dict()),
                                            key=r.model.encode()) for r in results)
        self.publisher.pump()
