"""The Kafka sidecar: consume prediction logs, window them per partition, checkpoint exactly once into SQL.

Exactly-once protocol (docs/kafka.md):

1. Each assigned partition has its own :class:`~monitor.pipeline.Pipeline`; producers key messages by model,
   so a stream's windows live on one partition.
2. Closed-window results wait in memory. Every ``checkpoint.interval_events`` records or
   ``checkpoint.interval_seconds`` (and on revoke and on stop) ONE SQL transaction writes the waiting
   results, and for every partition the next offset to consume together with the serialized state of its
   open windows. Results are keyed by (model, version, window_start), so writing one twice is harmless.
3. Only after that commit are Kafka offsets committed (for lag dashboards only), rejected records sent to
   the dead-letter topic and results published to the output topic.
4. On assignment a partition's pipeline is restored from its checkpoint and the consumer seeks to the stored
   offset. Everything after the checkpoint is reprocessed, and because a pipeline's output depends only on
   its input sequence, the reprocessing reproduces the lost results exactly.

If the database is unreachable, consumption continues until ``checkpoint.max_pending_events`` records are
waiting, then the partitions are paused (backpressure; nothing is dropped) and the commit is retried with
backoff until the database answers; then consumption resumes.

A record batch that cannot be read (fetch error: codec, CRC, decompression) pauses only its partition, at
that offset, and is fetched again with backoff (monitor/runtime/fetch_errors.py); the daemon stays up.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from prometheus_client import CollectorRegistry

from monitor.ab.experiments import log_experiment_result
from monitor.ab.labels import log_labels_result
from monitor.ab.shadow import log_shadow_result
from monitor.config import Config
from monitor.ingest.batch import Featurize
from monitor.ingest.reference import Profile
from monitor.ingest.tokenizer import TokenizerFeaturizer
from monitor.logs import log_event
from monitor.pipeline import Pipeline, Record
from monitor.results import ExperimentResult, ShadowResult, WindowResult
from monitor.runtime.fetch_errors import FETCH_ERROR_REASONS, FetchFaults, fetch_error_reason, release_failed_fetch
from monitor.runtime.http import HttpServer
from monitor.runtime.line_daemon import log_window
from monitor.runtime.pruner import Pruner
from monitor.runtime.checks import check_profiles
from monitor.runtime.embedding_worker import open_embedding_worker, set_embedding_gauges
from monitor.runtime.shutdown import Shutdown
from monitor.runtime.wiring import build_sink, load_featurizer, load_profiles
from sinks.sql import CheckpointConflict, SqlStore, StoreUnavailable

__all__ = ["KafkaDaemon", "kafka_client_config", "STATE_FORMAT"]

logger = logging.getLogger("nlpmon.kafka")
STATE_FORMAT = 1  # bump when Pipeline.state() changes shape; older checkpoints are then refused loudly
_encode_state = msgspec.msgpack.Encoder().encode
_decode_state = msgspec.msgpack.Decoder().decode


def kafka_client_config(config: Config) -> dict:
    """kafka-python settings shared by the consumer and the producers (security passed through)."""
    k = config.kafka
    out = {"bootstrap_servers": list(k.bootstrap_servers), "client_id": k.client_id, "security_protocol": k.security_protocol}
    if k.sasl_mechanism:
        out["sasl_mechanism"] = k.sasl_mechanism
        out["sasl_plain_username"] = k.sasl_username
        out["sasl_plain_password"] = k.sasl_password
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(k, name):
            out[name] = getattr(k, name)
    return out


@dataclass
class _Partition:
    """One assigned partition: its pipeline, what has been consumed, what is durable."""

    pipeline: Pipeline
    next_offset: int | None  # next offset to consume (None: no checkpoint and nothing fetched yet)
    committed_offset: int | None  # next_offset of the last durable checkpoint (None: no checkpoint yet)
    pending: list[WindowResult] = field(default_factory=list)  # closed-window results not yet durable
    # Experiment and shadow results (docs/experiments.md) not yet durable; written with the same checkpoint.
    pending_experiments: list[ExperimentResult] = field(default_factory=list)
    pending_shadow: list[ShadowResult] = field(default_factory=list)
    pending_labels: list = field(default_factory=list)  # labels results (realised accuracy), likewise
    dead_letters: list[tuple[bytes, str, str, str]] = field(default_factory=list)
    highwater: int | None = None


class _DeadLetterBuffer:
    """Collect rejected records of one partition; they are sent only after the checkpoint that covers them."""

    def __init__(self, part: _Partition | None = None):
        self.part = part

    def write(self, raw: bytes, reason: str, detail: str, position: str) -> None:
        if self.part is not None:
            self.part.dead_letters.append((raw, reason, detail, position))


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
        self.sink = build_sink(config, self.registry)
        self._clock = clock
        self.partitions: dict = {}  # TopicPartition -> _Partition
        self.store: SqlStore | None = None
        self.reeval = None  # monitor.reeval.scheduler.ReevalScheduler when [reeval] is enabled
        self.consumer = None
        self.producer = None
        self.tokenizer: TokenizerFeaturizer | None = None
        self.embedder = None  # monitor.runtime.embedding_worker.EmbeddingWorker with [embedding] model
        self.profiles: dict[str, Profile] = {}
        self.db_connected = False
        self.kafka_connected = False
        self.paused = False
        self._events_since_checkpoint = 0
        self._last_checkpoint = clock()
        self._retry_at = 0.0
        self._retry_delay = 0.5
        # Partitions whose batch could not be read (keyed by TopicPartition; None: partition unknown).
        self._fetch_faults = FetchFaults(max_s=config.kafka.fetch_retry_max_seconds)
        for reason in FETCH_ERROR_REASONS:
            self.sink.count_fetch_error(reason, 0)  # zero series, so the alert's increase() has a baseline
        # Called inside each checkpoint transaction just before it commits: fault injection for the crash
        # tests (a SIGKILL that lands mid-transaction); None in production.
        self._before_commit = before_commit
        # The pipelines' batch featurizer (None: the real one); the poison tests inject one that raises.
        self._featurize = featurize
        self._last_record_at = clock()
        # Work that must wait for the main loop: kafka-python runs rebalance callbacks on its IO thread, where
        # blocking client calls (commit, producer flush) are refused.
        self._to_publish: list[tuple[dict, list, list]] = []  # (offsets, dead letters, results)
        self._set_gauges()

    # -- lifecycle -----------------------------------------------------------------------------------------
    def run(self) -> int:
        with contextlib.ExitStack() as stack:
            self._open(stack)
            log_event(logging.INFO, "consuming", topics=",".join(self.config.kafka.topics), group=self.config.kafka.group_id)
            deadline = None
            while True:
                if self.shutdown.should_exit:
                    deadline = deadline or self._clock() + self.config.daemon.grace_seconds
                    break
                self.step()
            self._stop(deadline)
            self._publish()
        return 0

    def _open(self, stack: contextlib.ExitStack) -> None:
        from kafka import KafkaConsumer

        c = self.config
        self.tokenizer = load_featurizer(c)
        self.embedder = open_embedding_worker(c, stack)  # [embedding] model: one worker thread for all partitions
        self.profiles = load_profiles(c.reference.paths)
        self.store = stack.enter_context(SqlStore(c.store.url, upgrade=c.store.auto_upgrade))
        self._load_store_profiles()  # a schema behind with store.auto_upgrade off: SchemaBehind, exit 2, one line
        stack.enter_context(Pruner(self.store, c.store))  # retention, on its own thread (runtime/pruner.py)
        # Here, before the consumer exists: an incompatible profile is a startup error (exit 2, one line),
        # never an exception inside kafka-python's rebalance callback.
        check_profiles(self.profiles, self.tokenizer, embedding=c.embedding,
                       encoder=self.embedder.identity if self.embedder is not None else None)
        if c.reeval.enabled:
            from monitor.reeval.scheduler import ReevalScheduler

            self.reeval = ReevalScheduler(c.reeval, store=self.store, sink=self.sink, max_streams=c.metrics.max_streams)
            self.reeval.start()
            stack.callback(self.reeval.close)  # before the store closes: kills a run still going
        if c.metrics.enabled:
            server = HttpServer(self.registry, host=c.metrics.host, port=c.metrics.port, readiness=self.readiness,
                                status=self.status,
                                post_handlers={"/reeval": self.reeval.handle_post} if self.reeval else None).start()
            stack.callback(server.stop)
            self.http_port = server.port
            log_event(logging.INFO, "serving metrics", url=f"http://{c.metrics.host}:{server.port}/metrics")
        self.consumer = KafkaConsumer(
            **kafka_client_config(c),
            group_id=c.kafka.group_id,
            enable_auto_commit=False,  # offsets are committed after the DB checkpoint, for lag visibility only
            auto_offset_reset=c.kafka.start_offset,
            max_poll_records=c.kafka.max_poll_records,
            session_timeout_ms=c.kafka.session_timeout_ms,
            isolation_level=c.kafka.isolation_level,
            heartbeat_interval_ms=max(100, c.kafka.session_timeout_ms // 5),
            reconnect_backoff_max_ms=10_000,
        )
        stack.callback(self._close_consumer)
        if c.kafka.dead_letter_topic or c.kafka.output_topic:
            from kafka import KafkaProducer

            self.producer = KafkaProducer(**kafka_client_config(c), acks="all", linger_ms=20)
            stack.callback(lambda: self.producer.close(timeout=5))
        from kafka import ConsumerRebalanceListener

        daemon = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                daemon.on_revoked(revoked)

            def on_partitions_assigned(self, assigned):
                daemon.on_assigned(assigned)

        self.consumer.subscribe(list(c.kafka.topics), listener=Listener())

    def _close_consumer(self) -> None:
        try:
            self.consumer.close(autocommit=False)
        except Exception as exc:  # closing is best effort: the checkpoint is what matters
            log_event(logging.WARNING, "consumer close failed", error=type(exc).__name__)

    def _stop(self, deadline: float | None) -> None:
        """Final checkpoint and commit, within the grace period."""
        while True:
            if self._checkpoint(list(self.partitions), reason="stop"):
                break
            if deadline is not None and self._clock() >= deadline:
                log_event(logging.ERROR, "grace period over before the final checkpoint; the next start resumes from the last one")
                break
            time.sleep(min(1.0, self._retry_delay))
        log_event(logging.INFO, "stopped", partitions=len(self.partitions))

    def _load_store_profiles(self) -> None:
        try:
            stored = self.store.active_profiles()
        except StoreUnavailable as exc:
            log_event(logging.WARNING, "store unreachable at start; reference profiles from files only", error=str(exc))
            return
        for model, data in stored.items():
            if model not in self.profiles:  # files named in the config win
                self.profiles[model] = Profile.from_dict(data, origin=f"store profile of {model}")

    # -- one loop iteration --------------------------------------------------------------------------------
    def step(self) -> None:
        c = self.config
        if self.paused and self._clock() >= self._retry_at:
            if self._checkpoint(list(self.partitions), reason="retry"):
                self._resume()
        polled = self._poll()
        for tp, records in polled.items():
            part = self.partitions.get(tp)
            if part is None or not records:
                continue
            if tp in self._fetch_faults.faults:
                self._fetch_recovered(tp, records[0].offset)
            batch = [Record(r.value if r.value is not None else b"", f"{tp.topic}/{tp.partition}@{r.offset}") for r in records]
            self._take(part, part.pipeline.process(batch))  # never raises for a record (poison isolation)
            part.next_offset = records[-1].offset + 1
            self._events_since_checkpoint += len(records)
            self._last_record_at = self._clock()
        idle_s = self._clock() - self._last_record_at
        if not polled and c.window.idle_close_seconds and idle_s >= c.window.idle_close_seconds:
            for part in self.partitions.values():  # the whole source is quiet (docs/results.md)
                self._take(part, part.pipeline.close_idle(int(idle_s * 1000)))
        self._observe_kafka(polled)
        self._publish()
        due = (
            self._events_since_checkpoint >= c.checkpoint.interval_events
            or self._clock() - self._last_checkpoint >= c.checkpoint.interval_seconds
            # The stream went quiet: make what was consumed durable now rather than at the next interval.
            or (not polled and self._events_since_checkpoint > 0)
        )
        if due and not self.paused:
            self._checkpoint(list(self.partitions), reason="interval")
        if not self.paused and self._events_since_checkpoint >= c.checkpoint.max_pending_events:
            self._pause()
        if self.reeval is not None:
            self.reeval.tick()
            self.reeval.poll()

    def _take(self, part: _Partition, closed) -> None:
        """Results closed by a partition's pipeline wait for the checkpoint that makes them durable."""
        for r in closed.windows:
            log_window(r)
            if self.reeval is not None:
                self.reeval.on_window(r)
        part.pending.extend(closed.windows)
        for log, results, pending in ((log_experiment_result, closed.experiments, part.pending_experiments),
                                      (log_shadow_result, closed.shadow, part.pending_shadow),
                                      (log_labels_result, closed.labels, part.pending_labels)):
            for r in results:
                log(r)
            pending.extend(results)

    # -- fetch errors --------------------------------------------------------------------------------------
    def _poll(self) -> dict:
        """Poll, surviving fetch-level errors (docs/kafka.md, "Fetch errors"); anything else still raises."""
        c = self.config.kafka
        now = self._clock()
        for key in self._fetch_faults.due(now):
            if key is not None and key in self.partitions and not self.paused:
                self.consumer.resume(key)
        unknown = self._fetch_faults.faults.get(None)
        if unknown is not None and unknown.retry_at > now:
            # The failed partition is not known, so nothing could be paused: hold every fetch instead.
            time.sleep(min(unknown.retry_at - now, c.poll_timeout_ms / 1000))
            return {}
        try:
            polled = self.consumer.poll(timeout_ms=c.poll_timeout_ms, max_records=c.max_poll_records)
        except Exception as exc:
            reason = fetch_error_reason(exc)
            if reason is None:
                raise
            self._fetch_error(reason, exc)
            return {}
        if unknown is not None and unknown.retrying:
            self._fetch_recovered(None, None)  # a whole poll without the error after the backoff
        return polled

    def _fetch_error(self, reason: str, exc: Exception) -> None:
        failed = release_failed_fetch(self.consumer)
        tp, offset = failed if failed is not None else (None, None)
        error = f"{type(exc).__name__}: {exc}"
        fault, changed = self._fetch_faults.record(tp, reason, offset, error, self._clock())
        self.sink.count_fetch_error(reason)
        if tp is not None and tp in self.partitions:
            self.consumer.pause(tp)
        where = _where(tp)
        if changed:  # one line per fault, not one per retry
            log_event(logging.ERROR, "fetch error: a record batch cannot be read; the partition waits at this offset "
                      "(nothing is skipped) and is fetched again with backoff",
                      **where, offset=offset, reason=reason, error=error[:300])  # fmt: skip
        else:
            log_event(logging.DEBUG, "fetch error again", **where, offset=offset, reason=reason,
                      failures=fault.failures, retry_in_seconds=fault.delay_s)
        self._set_gauges()

    def _fetch_recovered(self, tp, first_offset: int | None) -> None:
        """Records of ``tp`` arrived (or, ``tp`` None, a poll passed): its fault is over."""
        fault = self._fetch_faults.clear(tp)
        if fault is None:
            return
        where = _where(tp)
        log_event(logging.INFO, "fetch recovered", **where, offset=first_offset, reason=fault.reason, failures=fault.failures)
        self._set_gauges()

    # -- checkpoints ---------------------------------------------------------------------------------------
    def _checkpoint(self, tps, *, reason: str) -> bool:
        """Make the given partitions durable; return False (and keep everything) when the DB is unreachable."""
        parts = [(tp, self.partitions[tp]) for tp in tps if tp in self.partitions]
        dirty = [(tp, p) for tp, p in parts if p.next_offset is not None and (p.committed_offset != p.next_offset
                 or p.pending or p.pending_experiments or p.pending_shadow or p.pending_labels)]
        if not dirty:
            self._last_checkpoint = self._clock()
            if len(tps) == len(self.partitions):
                self._events_since_checkpoint = 0
            return True
        results = [r for _, p in dirty for r in p.pending]
        checkpoints = {
            (tp.topic, tp.partition): (p.next_offset, _encode_state({"format": STATE_FORMAT, "pipeline": p.pipeline.state()}))
            for tp, p in dirty
        }
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
            self._db_down(exc)
            return False
        except CheckpointConflict as exc:
            # Another consumer owns these partitions now (this one was fenced out, e.g. after a long stall):
            # drop their state; the new owner resumes from its own checkpoint. Never overwrite it.
            log_event(logging.ERROR, "checkpoint conflict: partitions taken over by another consumer", detail=str(exc))
            for tp, _ in dirty:
                self.partitions.pop(tp, None)
            return True
        if not self.db_connected:
            log_event(logging.INFO, "database reachable again")
        self.db_connected = True
        self._retry_delay = 0.5
        for tp, p in dirty:
            p.committed_offset = p.next_offset
        self._after_commit(dirty, results)
        if len(tps) == len(self.partitions):
            self._events_since_checkpoint = 0
        self._last_checkpoint = self._clock()
        self.sink.set_gauge("nlpmon_checkpoint_duration_seconds", "Duration of the last checkpoint transaction.", self._clock() - started)
        self.sink.set_gauge("nlpmon_checkpoint_results", "Window results written by the last checkpoint.", len(results))
        self._set_gauges()
        log_event(logging.DEBUG, "checkpoint", reason=reason, partitions=len(dirty), results=len(results))
        return True

    def _after_commit(self, dirty, results) -> None:
        from kafka.structs import OffsetAndMetadata

        offsets = {tp: OffsetAndMetadata(p.next_offset, "", -1) for tp, p in dirty}
        dead = [d for _, p in dirty for d in p.dead_letters]
        self._to_publish.append((offsets, dead, list(results)))
        for _, p in dirty:
            for durable in (p.pending, p.pending_experiments, p.pending_shadow, p.pending_labels, p.dead_letters):
                durable.clear()

    def _publish(self) -> None:
        """After a durable checkpoint: commit Kafka offsets (lag visibility only), send dead letters/results."""
        if not self._to_publish:
            return
        batches, self._to_publish = self._to_publish, []
        offsets = {}
        for o, _, _ in batches:
            offsets.update({tp: v for tp, v in o.items() if tp in self.partitions})
        if offsets:
            try:
                self.consumer.commit(offsets)
            except Exception as exc:
                log_event(logging.WARNING, "kafka offset commit failed (lag metrics may lag)", error=type(exc).__name__)
        if self.producer is None:
            return
        k = self.config.kafka
        # At-least-once: a crash between the checkpoint and here re-sends nothing (the records are past the
        # checkpoint), a crash before the checkpoint re-sends after reprocessing. Consumers dedupe on the key.
        for _, dead, results in batches:
            for raw, reason, detail, position in dead:
                self.producer.send(k.dead_letter_topic, value=raw, headers=[
                    ("nlpmon-reason", reason.encode()), ("nlpmon-detail", detail.encode()),
                    ("nlpmon-source", position.encode())])  # fmt: skip
                self.sink.count_dead_letter()
            if k.output_topic:
                for r in results:
                    # The output topic is an edge where JSON leaves the process (docs/results.md).
                    self.producer.send(k.output_topic, key=r.model.encode(), value=msgspec.json.encode(r.to_dict()))
        self.producer.flush(timeout=10)

    def _db_down(self, exc: Exception) -> None:
        if self.db_connected or self._retry_delay <= 0.5:
            log_event(logging.WARNING, "database unreachable; results wait in memory", error=str(exc)[:200])
        self.db_connected = False
        self._retry_at = self._clock() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self.config.checkpoint.retry_max_seconds)
        self._set_gauges()

    def _pause(self) -> None:
        tps = list(self.partitions)
        if tps:
            self.consumer.pause(*tps)
        self.paused = True
        self._set_gauges()
        log_event(logging.WARNING, "backpressure: consumption paused until the database takes a checkpoint",
                  pending_events=self._events_since_checkpoint)

    def _resume(self) -> None:
        tps = [tp for tp in self.partitions if not self._fetch_faults.waiting(tp)]  # fetch-error backoff holds
        if tps:
            self.consumer.resume(*tps)
        self.paused = False
        self._set_gauges()
        log_event(logging.INFO, "consumption resumed")

    # -- rebalances ----------------------------------------------------------------------------------------
    def on_revoked(self, revoked) -> None:
        mine = [tp for tp in revoked if tp in self.partitions]
        if mine and not self._checkpoint(mine, reason="revoke"):
            log_event(logging.WARNING, "revoked partitions could not be checkpointed; their new owner resumes from the last checkpoint",
                      partitions=len(mine))  # fmt: skip
        for tp in mine:
            self.partitions.pop(tp, None)
            self._fetch_faults.clear(tp)  # the new owner meets the batch (and reports it) itself
        self._set_gauges()
        if mine:
            log_event(logging.INFO, "partitions revoked", partitions=_tps(mine))

    def on_assigned(self, assigned) -> None:
        new = [tp for tp in assigned if tp not in self.partitions]
        if not new:
            return
        try:
            stored = self.store.load_checkpoints(self.config.kafka.group_id, [(tp.topic, tp.partition) for tp in new])
        except StoreUnavailable as exc:
            # Without the checkpoint we must not consume (we would double count); pause until the DB is back.
            log_event(logging.ERROR, "database unreachable on assignment; partitions paused", error=str(exc)[:200])
            self._db_down(exc)
            stored = None
        for tp in new:
            pipeline = self._new_pipeline()
            part = _Partition(pipeline=pipeline, next_offset=0, committed_offset=None)
            if self.config.kafka.dead_letter_topic:
                pipeline.dead_letter = _DeadLetterBuffer(part)
            cp = None if stored is None else stored.get((tp.topic, tp.partition))
            if cp is not None:
                offset, state = cp
                if state:
                    data = _decode_state(state)
                    if data.get("format") != STATE_FORMAT:
                        raise RuntimeError(f"checkpoint of {tp.topic}[{tp.partition}] has state format {data.get('format')}, "
                                           f"this nlpmon reads {STATE_FORMAT}")  # fmt: skip
                    pipeline.restore(data["pipeline"])
                part.next_offset = part.committed_offset = offset
                self.consumer.seek(tp, offset)
            elif stored is not None:
                # No checkpoint: start per kafka.start_offset (next_offset stays None until the first fetch;
                # this callback runs on kafka-python's IO thread, where position() may not block).
                part.next_offset = None
                if self.config.kafka.start_offset == "earliest":
                    self.consumer.seek_to_beginning(tp)
                else:
                    self.consumer.seek_to_end(tp)
            self.partitions[tp] = part
        if stored is None:
            self.consumer.pause(*new)
            self.paused = True
        elif self.paused:
            self.consumer.pause(*new)
        self._set_gauges()
        log_event(logging.INFO, "partitions assigned", partitions=_tps(new), restored=sum(1 for tp in new if stored and (tp.topic, tp.partition) in stored))

    def _new_pipeline(self) -> Pipeline:
        return Pipeline(self.config, profiles=self.profiles, tokenizer=self.tokenizer, sink=self.sink,
                        on_window_confidences=self.reeval.observe_confidences if self.reeval else None,
                        on_events=self.reeval.observe_events if self.reeval else None, embedder=self.embedder,
                        **({"featurize": self._featurize} if self._featurize is not None else {}))

    # -- health --------------------------------------------------------------------------------------------
    def _observe_kafka(self, polled) -> None:
        # The group coordinator's connection is the signal: kafka-python drops it (coordinator unknown) when
        # requests or heartbeats time out, e.g. a broker that is down or paused. Records arriving prove it too.
        coordinator = getattr(self.consumer, "_coordinator", None)
        try:
            known = coordinator is not None and not coordinator.coordinator_unknown()
        except Exception:
            known = False
        connected = bool(polled) or known
        if connected != self.kafka_connected:
            log_event(logging.INFO if connected else logging.WARNING, "kafka " + ("connected" if connected else "unreachable"))
        self.kafka_connected = connected
        for tp, part in self.partitions.items():
            try:
                hw = self.consumer.highwater(tp)
            except Exception:
                hw = None
            if hw is not None:
                part.highwater = hw
            if part.highwater is not None and part.next_offset is not None:
                self.sink.set_gauge("nlpmon_consumer_lag", "Records in the partition not yet consumed.",
                                    max(0, part.highwater - part.next_offset), topic=tp.topic, partition=str(tp.partition))
        self._set_gauges()

    def _set_gauges(self) -> None:
        s = self.sink
        s.set_gauge("nlpmon_kafka_connected", "1 while the broker (group coordinator) is reachable.", float(self.kafka_connected))
        s.set_gauge("nlpmon_db_connected", "1 while the SQL store accepts checkpoints.", float(self.db_connected))
        s.set_gauge("nlpmon_consumption_paused", "1 while consumption is paused for backpressure.", float(self.paused))
        s.set_gauge("nlpmon_assigned_partitions", "Partitions assigned to this consumer.", float(len(self.partitions)))
        s.set_gauge("nlpmon_ready", "1 when /readyz answers 200.", float(self.readiness()[0]))
        s.set_gauge("nlpmon_pending_events", "Records consumed since the last durable checkpoint.", float(self._events_since_checkpoint))
        s.set_open_windows(sum(p.pipeline.open_windows for p in self.partitions.values()))
        set_embedding_gauges(s, self.embedder, [p.pipeline for p in self.partitions.values()])
        if self.config.shadow.enabled:
            s.set_shadow_pending(sum(p.pipeline.shadow.joiner.pending for p in self.partitions.values()))
        if self.config.labels.enabled:  # the sum over partitions, as for shadow joins
            s.set_label_pending(sum(p.pipeline.labels.pending for p in self.partitions.values()))

    def readiness(self) -> tuple[bool, dict]:
        checks = {"kafka_connected": self.kafka_connected, "db_connected": self.db_connected,
                  "assigned_partitions": len(self.partitions), "paused": self.paused,
                  "fetch_errors": self._fetch_faults.checks(lambda tp: "unknown" if tp is None else f"{tp.topic}/{tp.partition}")}
        ready = (self.kafka_connected and self.db_connected and bool(self.partitions) and not self.paused
                 and not self._fetch_faults)
        return ready, checks

    def status(self) -> dict:
        return {
            "windows": [r.to_dict() for r in self.sink.latest_windows()],
            "partitions": {f"{tp.topic}/{tp.partition}": {"next_offset": p.next_offset, "committed_offset": p.committed_offset,
                                                           "pending_results": len(p.pending), "open_windows": p.pipeline.open_windows}
                           for tp, p in self.partitions.items()},
            "ready": self.readiness()[1],
            **({"reeval": self.reeval.status()} if self.reeval else {}),
        }  # fmt: skip


def _where(tp) -> dict:
    return {"topic": tp.topic, "partition": tp.partition} if tp is not None else {"topic": "unknown", "partition": "unknown"}


def _tps(tps) -> str:
    return ",".join(f"{tp.topic}/{tp.partition}" for tp in sorted(tps))
