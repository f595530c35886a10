"""The Kafka sidecar: consume prediction logs, window them per partition, checkpoint exactly once into SQL.

Exactly-once protocol (docs/kafka.md):

1. Each assigned partition has its own :class:`~monitor.pipeline.Pipeline` (:mod:`monitor.runtime.partitions`).
2. Closed-window results wait in memory. Every ``checkpoint.interval_events`` records or
   ``checkpoint.interval_seconds`` (and on revoke and on stop) ONE SQL transaction makes them durable with
   every partition's next offset and pipeline state; only then are Kafka offsets committed, dead letters and
   results published (:mod:`monitor.runtime.checkpointer`).
3. On assignment a partition's pipeline is restored from its checkpoint and the consumer seeks to the stored
   offset. Everything after the checkpoint is reprocessed, and because a pipeline's output depends only on
   its input sequence, the reprocessing reproduces the lost results exactly.

If the database is unreachable, consumption continues until ``checkpoint.max_pending_events`` records are
waiting, then the partitions are paused (backpressure; nothing is dropped) and the commit is retried with
backoff until the database answers; then consumption resumes. Unreadable record batches are the consumer's
business (:mod:`monitor.runtime.consumer`). This class coordinates those parts and owns the lifecycle.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from monitor.config import Config
from monitor.ingest.batch import Featurize
from monitor.ingest.reference import Profile
from monitor.logs import log_event
from monitor.pipeline import Pipeline
from monitor.results import BatchResults
from monitor.runtime import probes
from monitor.runtime.checkpointer import Checkpointer, Outcome
from monitor.runtime.consumer import Fetcher, kafka_client_config
from monitor.runtime.heartbeat import Heartbeat
from monitor.runtime.partitions import DeadLetterBuffer, KafkaRecord, PartitionState
from monitor.runtime.result_log import log_experiment_result, log_labels_result, log_shadow_result, log_window
from monitor.runtime.pruner import Pruner
from monitor.runtime.shutdown import Shutdown
from monitor.runtime.startup import NotYet, Waiting, wait_for
from monitor.runtime.wiring import Components, build_components, build_sink, freeze_startup_objects, one_blas_thread
from sinks.sql import StoreUnavailable

__all__ = ["KafkaDaemon"]


class KafkaDaemon:
    """Run the sidecar until :attr:`shutdown` says stop. Resources are owned by one ``ExitStack``."""

    def __init__(
        self,
        config: Config,
        *,
        shutdown: Shutdown | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        before_commit: Callable[[], None] | None = None,
        featurize: Featurize | None = None,
    ):
        self.config = config
        self.shutdown = shutdown or Shutdown()
        self.registry = registry if registry is not None else CollectorRegistry()
        self.sink = build_sink(config, self.registry)  # before any connection: the startup gauges need it
        self._clock = clock
        self.partitions: dict[object, PartitionState] = {}  # by kafka TopicPartition
        self.components: Components | None = None  # tokenizer, profiles, [embedding] worker: built on open
        self.reeval = None  # monitor.reeval.scheduler.ReevalScheduler when [reeval] is enabled
        self.fetcher = Fetcher(config, self.sink, clock=clock, on_change=self._set_gauges)
        # before_commit: called inside each checkpoint transaction (the crash tests' pause); None in production.
        self.checkpointer = Checkpointer(config, self.sink, clock=clock, before_commit=before_commit)
        self.waiting = Waiting(self.sink, clock=clock)  # what the daemon waits for (broker, topic, database...)
        self._unloaded: set = set()  # assigned while the database was down: checkpoint not loaded, kept paused
        self.paused = False
        self.pending_events = 0  # records consumed since the last durable checkpoint
        # The pipelines' batch featurizer (None: the real one); the poison tests inject one that raises.
        self._featurize = featurize
        self._last_record_at = clock()
        # Liveness (/healthz): beaten by every step; real monotonic time, whatever clock the tests inject.
        self.heartbeat = Heartbeat(config.probe.stall_seconds)
        self._set_gauges()

    # -- lifecycle -----------------------------------------------------------------------------------------
    def run(self) -> int:
        with contextlib.ExitStack() as stack:
            if not self._open(stack):  # a shutdown while waiting for the broker or the database
                log_event(logging.INFO, "stopped while waiting; nothing was consumed")
                return 0
            log_event(logging.INFO, "consuming", topics=",".join(self.config.kafka.topics), group=self.config.kafka.group_id)
            deadline = None
            while True:
                if self.shutdown.should_exit:
                    deadline = deadline or self._clock() + self.config.daemon.grace_seconds
                    break
                self.step()
            self._stop(deadline)
            self.checkpointer.publish(self.fetcher.consumer, self.partitions)
        return 0

    def _open(self, stack: contextlib.ExitStack) -> bool:
        """Open every resource, waiting for the database and the broker (docs/kafka.md, "Start in any order");
        False when a shutdown came first."""
        c = self.config
        one_blas_thread(stack)  # restored at close
        self.components = build_components(c, registry=self.registry, sink=self.sink)
        if self.components.embedder is not None:  # [embedding] model: one worker thread for all partitions
            stack.callback(self.components.embedder.close)
            self.components.embedder.on_progress = self.heartbeat.beat  # covers the loop at a barrier
        store = self.checkpointer.open_store(stack)
        if c.metrics.enabled:  # first: /readyz says what the daemon waits for
            self.http_port = probes.serve(self, stack)
        if c.report.enabled:  # the read-only report pages over the same store (docs/report.md)
            self.report_port = probes.serve_report(c, store, stack, profiles=self.components.profiles)
        with self.heartbeat.waiting("database (at start)"):  # a database down at start is readiness, not liveness
            if not self._wait_store():
                return False
        stack.enter_context(Pruner(store, c.store))  # retention, on its own thread (runtime/pruner.py)
        # Here, before the consumer exists: an incompatible profile is a startup error (exit 2, one line),
        # never an exception inside kafka-python's rebalance callback.
        self.components.check(c.embedding)
        if c.reeval.enabled:
            from monitor.reeval.scheduler import ReevalScheduler

            self.reeval = ReevalScheduler(c.reeval, store=store, sink=self.sink, max_streams=c.metrics.max_streams)
            self.reeval.start()
            stack.callback(self.reeval.close)  # before the store closes: kills a run still going
        with self.heartbeat.waiting("kafka (connecting)"):  # a broker down at start is readiness, not liveness
            if not self.fetcher.open(stack, shutdown=self.shutdown, waiting=self.waiting):
                return False
            self.fetcher.subscribe(on_revoked=self.on_revoked, on_assigned=self.on_assigned)
        self.checkpointer.open_producer(stack, kafka_client_config(c))  # connects when it first sends
        freeze_startup_objects(stack)
        return True

    def _stop(self, deadline: float | None) -> None:
        """Final checkpoint and commit, within the grace period."""
        while True:
            if self._checkpoint(list(self.partitions), reason="stop"):
                break
            if deadline is not None and self._clock() >= deadline:
                log_event(logging.ERROR, "grace period over before the final checkpoint; the next start resumes from the last one")
                break
            time.sleep(min(1.0, self.checkpointer.retry_delay))
        log_event(logging.INFO, "stopped", partitions=len(self.partitions))

    def _wait_store(self) -> bool:
        """Wait until the database answers, then load its active reference profiles; False: shutdown first."""

        def attempt() -> dict:
            try:
                return self.checkpointer.store.active_profiles()
            except StoreUnavailable as exc:
                raise NotYet(str(exc)[:200]) from None

        stored = wait_for("database", attempt, shutdown=self.shutdown, waiting=self.waiting,
                          timeout_s=self.config.store.startup_timeout_seconds)
        if stored is None:
            return False
        self.checkpointer.db_up()
        self._set_gauges()
        profiles = self.components.profiles
        for model, data in stored.items():
            if model not in profiles:  # files named in the config win
                profiles[model] = Profile.from_dict(data, origin=f"store profile of {model}")
        return True

    # -- one loop iteration --------------------------------------------------------------------------------
    def step(self) -> None:
        c, cp = self.config, self.checkpointer
        self.heartbeat.beat()
        if self.paused and self._clock() >= cp.retry_at:
            if self._load_unloaded() and self._checkpoint(list(self.partitions), reason="retry"):
                self._set_paused(False)
        polled = self.fetcher.poll(self.partitions, paused=self.paused)
        for tp, records in polled.items():
            part = self.partitions.get(tp)
            if part is None or not records:
                continue
            if tp in self.fetcher.faults.faults:
                self.fetcher.recovered(tp, records[0].offset)
            # A tombstone (no value) is an empty record: rejected as malformed, never an exception.
            batch = [KafkaRecord(r.value if r.value is not None else b"", r.offset, tp) for r in records]
            self._take(part, part.pipeline.process(batch))  # never raises for a record (poison isolation)
            part.next_offset = records[-1].offset + 1
            self.pending_events += len(records)
            self._last_record_at = self._clock()
        idle_s = self._clock() - self._last_record_at
        if not polled and c.window.idle_close_seconds and idle_s >= c.window.idle_close_seconds:
            for part in self.partitions.values():  # the whole source is quiet (docs/results.md)
                self._take(part, part.pipeline.close_idle(int(idle_s * 1000)))
        self.fetcher.observe(polled, self.partitions)
        self.fetcher.observe_waits(self.waiting, self.partitions)
        self._set_gauges()
        with self.heartbeat.waiting("kafka (offset commit, publishing)"):
            cp.publish(self.fetcher.consumer, self.partitions)
        due = (
            self.pending_events >= c.checkpoint.interval_events
            or self._clock() - cp.last_checkpoint >= c.checkpoint.interval_seconds
            # The stream went quiet: make what was consumed durable now rather than at the next interval.
            or (not polled and self.pending_events > 0)
        )
        if due and not self.paused:
            self._checkpoint(list(self.partitions), reason="interval")
        if not self.paused and self.pending_events >= c.checkpoint.max_pending_events:
            self._set_paused(True)
        if self.reeval is not None:
            self.reeval.tick()
            self.reeval.poll()

    def _take(self, part: PartitionState, closed: BatchResults) -> None:
        """Log what a partition's pipeline closed; it waits there for the checkpoint that makes it durable."""
        for r in closed.windows:
            log_window(r)
            if self.reeval is not None:
                self.reeval.on_window(r)
        for log, results in ((log_experiment_result, closed.experiments), (log_shadow_result, closed.shadow),
                             (log_labels_result, closed.labels)):
            for r in results:
                log(r)
        part.take(closed)

    def _checkpoint(self, tps, *, reason: str) -> bool:
        """Make the given partitions durable; return False (and keep everything) when the DB is unreachable."""
        dirty = [(tp, self.partitions[tp]) for tp in tps if tp in self.partitions and self.partitions[tp].dirty]
        with self.heartbeat.waiting("database (checkpoint)"):
            outcome = self.checkpointer.commit(dirty, reason=reason)
        if outcome is Outcome.CONFLICT:
            for tp, _ in dirty:
                self.partitions.pop(tp, None)
            return True
        if outcome is Outcome.COMMITTED and len(tps) == len(self.partitions):
            self.pending_events = 0  # every partition is durable up to what it consumed
        if dirty:
            self._set_gauges()
        return outcome is Outcome.COMMITTED

    def _set_paused(self, paused: bool) -> None:
        """Backpressure: pause every partition while the database lags; resume all but those a fetch error holds."""
        (self.fetcher.pause if paused else self.fetcher.resume)(list(self.partitions))
        self.paused = paused
        self._set_gauges()
        if paused:
            log_event(logging.WARNING, "backpressure: consumption paused until the database takes a checkpoint",
                      pending_events=self.pending_events)
        else:
            log_event(logging.INFO, "consumption resumed")

    # -- rebalances (kafka-python's IO thread) ---------------------------------------------------------------
    def on_revoked(self, revoked) -> None:
        mine = [tp for tp in revoked if tp in self.partitions]
        if mine and not self._checkpoint(mine, reason="revoke"):
            log_event(logging.WARNING, "revoked partitions could not be checkpointed; their new owner resumes from the last checkpoint",
                      partitions=len(mine))  # fmt: skip
        for tp in mine:
            self.partitions.pop(tp, None)
            self.fetcher.faults.clear(tp)  # the new owner meets the batch (and reports it) itself
        self._set_gauges()
        if mine:
            log_event(logging.INFO, "partitions revoked", partitions=_tps(mine))

    def on_assigned(self, assigned) -> None:
        new = [tp for tp in assigned if tp not in self.partitions]
        if not new:
            return
        stored = self._load_checkpoints(new)
        for tp in new:
            part = self._new_partition()
            if stored is not None:
                self.fetcher.start(tp, part, stored.get((tp.topic, tp.partition)))
            else:  # paused below, and started from its checkpoint once the database answers (_load_unloaded)
                part.next_offset = None  # nothing to checkpoint before then
                self._unloaded.add(tp)
            self.partitions[tp] = part
        if stored is None or self.paused:
            self.fetcher.pause(new)
            self.paused = True
        self._set_gauges()
        log_event(logging.INFO, "partitions assigned", partitions=_tps(new), restored=sum(1 for tp in new if stored and (tp.topic, tp.partition) in stored))

    def _load_checkpoints(self, tps) -> dict | None:
        """The stored checkpoints of ``tps``; None when the database does not answer (said once, backoff set)."""
        try:
            with self.heartbeat.waiting("database (loading checkpoints)"):
                return self.checkpointer.store.load_checkpoints(self.config.kafka.group_id,
                                                                [(tp.topic, tp.partition) for tp in tps])
        except StoreUnavailable as exc:
            # Without the checkpoint we must not consume (we would double count); pause until the DB is back.
            if self.checkpointer.db_connected:
                log_event(logging.ERROR, "database unreachable on assignment; partitions paused", error=str(exc)[:200])
            self.checkpointer.db_down(exc)
            self._set_gauges()
            return None

    def _load_unloaded(self) -> bool:
        """Start the partitions assigned while the database was down from their checkpoints; whether all are."""
        tps = [tp for tp in self._unloaded if tp in self.partitions]
        self._unloaded.intersection_update(tps)
        if not tps:
            return True
        stored = self._load_checkpoints(tps)
        if stored is None:
            return False
        for tp in tps:
            self.fetcher.start(tp, self.partitions[tp], stored.get((tp.topic, tp.partition)))
        self._unloaded.clear()
        self.checkpointer.db_up()
        return True

    def _new_partition(self) -> PartitionState:
        parts, reeval = self.components, self.reeval
        pipeline = Pipeline(self.config, profiles=parts.profiles, tokenizer=parts.tokenizer, sink=self.sink,
                            on_window_confidences=reeval.observe_confidences if reeval else None,
                            on_events=reeval.observe_events if reeval else None, embedder=parts.embedder,
                            **({"featurize": self._featurize} if self._featurize is not None else {}))
        part = PartitionState(pipeline=pipeline, next_offset=0, committed_offset=None)
        if self.config.kafka.dead_letter_topic:
            pipeline.dead_letter = DeadLetterBuffer(part)
        return part

    # -- probes (monitor/runtime/probes.py) -----------------------------------------------------------------
    def _set_gauges(self) -> None:
        probes.set_gauges(self)

    def readiness(self) -> tuple[bool, dict]:
        return probes.readiness(self)

    def status(self) -> dict:
        return probes.status(self)


def _tps(tps) -> str:
    return ",".join(f"{tp.topic}/{tp.partition}" for tp in sorted(tps))
