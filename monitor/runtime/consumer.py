"""The consuming side of the Kafka daemon: the consumer, polling that survives unreadable batches, and health.

A record batch that cannot be read (fetch error: codec, CRC, decompression) pauses only its partition, at that
offset, and is fetched again with backoff (:mod:`monitor.runtime.fetch_errors`); the daemon stays up. Whether
the broker answers and how far each partition lags are read here too, for the probes and gauges.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from kafka import ConsumerRebalanceListener

from monitor.config import Config
from monitor.logs import log_event
from monitor.runtime.fetch_errors import FETCH_ERROR_REASONS, FetchFaults, fetch_error_reason, release_failed_fetch
from monitor.runtime.partitions import PartitionState
from monitor.runtime.shutdown import Shutdown
from monitor.runtime.startup import NotYet, Waiting, wait_for
from sinks.prometheus import PrometheusSink

__all__ = ["Fetcher", "connect_client", "kafka_client_config", "partition_name"]

# How long one try at reaching the broker may take: a shutdown is seen between tries (docs/kafka.md).
BOOTSTRAP_TRY_MS = 500
TOPIC_RECHECK_S = 5.0  # how often a subscribed topic that is not there yet is asked for again


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


def connect_client(cls, client_config: dict, **settings):
    """Construct a kafka-python ``KafkaConsumer`` or ``KafkaProducer`` (the constructor bootstraps), giving up
    after one short try with :class:`~monitor.runtime.startup.NotYet` and leaving no IO thread behind."""
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError
    from kafka.net.compat import KafkaNetClient

    made = []

    def client(**kwargs):  # kept, so that a constructor that gives up can be cleaned after
        made.append(KafkaNetClient(**kwargs))
        return made[-1]

    try:
        return cls(**client_config, **settings, bootstrap_timeout_ms=BOOTSTRAP_TRY_MS, kafka_client=client)
    except (KafkaTimeoutError, KafkaConnectionError):
        for c in made:
            with contextlib.suppress(Exception):
                c.close()
        raise NotYet(f"no broker answers at {','.join(client_config['bootstrap_servers'])}") from None


def partition_name(tp) -> str:
    """``topic/partition``, or ``unknown`` for a fetch error whose partition is not known."""
    return "unknown" if tp is None else f"{tp.topic}/{tp.partition}"


class _Listener(ConsumerRebalanceListener):
    """Forward kafka-python's rebalance callbacks (run on its IO thread) to the daemon."""

    def __init__(self, on_revoked: Callable, on_assigned: Callable):
        self.on_revoked, self.on_assigned = on_revoked, on_assigned

    def on_partitions_revoked(self, revoked):
        self.on_revoked(revoked)

    def on_partitions_assigned(self, assigned):
        self.on_assigned(assigned)


class Fetcher:
    """Own the consumer: poll it, keep unreadable partitions waiting with backoff, observe the broker."""

    def __init__(self, config: Config, sink: PrometheusSink, *, clock: Callable[[], float],
                 on_change: Callable[[], None]):
        self.config = config
        self.sink = sink
        self._clock = clock
        self._on_change = on_change  # the daemon's gauges, refreshed when a fault starts or ends
        self.consumer = None
        self.kafka_connected = False
        self._metadata_due = 0.0  # when to ask the broker again for a subscribed topic that is not there yet
        # Partitions whose batch could not be read (keyed by TopicPartition; None: partition unknown).
        self.faults = FetchFaults(max_s=config.kafka.fetch_retry_max_seconds)
        for reason in FETCH_ERROR_REASONS:
            sink.count_fetch_error(reason, 0)  # zero series, so the alert's increase() has a baseline

    def open(self, stack: contextlib.ExitStack, *, shutdown: Shutdown, waiting: Waiting) -> bool:
        """Create the consumer once the broker answers (waiting with backoff); False: shutdown came first."""
        consumer = wait_for("broker", self._connect, shutdown=shutdown, waiting=waiting,
                            timeout_s=self.config.kafka.startup_timeout_seconds)
        if consumer is None:
            return False
        self.consumer = consumer
        stack.callback(self._close)
        return True

    def _connect(self):
        """One try at a consumer: kafka-python bootstraps in the constructor (NotYet when nobody answers)."""
        from kafka import KafkaConsumer

        k = self.config.kafka
        return connect_client(
            KafkaConsumer, kafka_client_config(self.config),
            group_id=k.group_id,
            enable_auto_commit=False,  # offsets are committed after the DB checkpoint, for lag visibility only
            auto_offset_reset=k.start_offset,
            max_poll_records=k.max_poll_records,
            session_timeout_ms=k.session_timeout_ms,
            isolation_level=k.isolation_level,
            heartbeat_interval_ms=max(100, k.session_timeout_ms // 5),
            reconnect_backoff_max_ms=10_000,
        )

    def subscribe(self, *, on_revoked: Callable, on_assigned: Callable) -> None:
        self.consumer.subscribe(list(self.config.kafka.topics), listener=_Listener(on_revoked, on_assigned))

    def start(self, tp, part: PartitionState, checkpoint: tuple[int, bytes | None] | None) -> None:
        """Start an assigned partition at its checkpoint (restoring its pipeline), or per kafka.start_offset."""
        if checkpoint is not None:
            part.restore(*checkpoint, where=f"{tp.topic}[{tp.partition}]")
            self.consumer.seek(tp, part.next_offset)
            return
        # next_offset stays None until the first fetch: this runs in a rebalance callback, on kafka-python's IO
        # thread, where position() may not block.
        part.next_offset = None
        if self.config.kafka.start_offset == "earliest":
            self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek_to_end(tp)

    def pause(self, tps) -> None:
        if tps:
            self.consumer.pause(*tps)

    def resume(self, tps) -> None:
        """Resume ``tps`` except those still inside a fetch error's backoff."""
        ready = [tp for tp in tps if not self.faults.waiting(tp)]
        if ready:
            self.consumer.resume(*ready)

    def _close(self) -> None:
        try:
            self.consumer.close(autocommit=False)
        except Exception as exc:  # closing is best effort: the checkpoint is what matters
            log_event(logging.WARNING, "consumer close failed", error=type(exc).__name__)

    def poll(self, assigned: Mapping, *, paused: bool) -> dict:
        """Poll, surviving fetch-level errors (docs/kafka.md, "Fetch errors"); anything else still raises."""
        c = self.config.kafka
        now = self._clock()
        for key in self.faults.due(now):
            if key is not None and key in assigned and not paused:
                self.consumer.resume(key)
        unknown = self.faults.faults.get(None)
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
            self._fetch_error(reason, exc, assigned)
            return {}
        if unknown is not None and unknown.retrying:
            self.recovered(None, None)  # a whole poll without the error after the backoff
        return polled

    def _fetch_error(self, reason: str, exc: Exception, assigned: Mapping) -> None:
        failed = release_failed_fetch(self.consumer)
        tp, offset = failed if failed is not None else (None, None)
        error = f"{type(exc).__name__}: {exc}"
        fault, changed = self.faults.record(tp, reason, offset, error, now=self._clock())
        self.sink.count_fetch_error(reason)
        if tp is not None and tp in assigned:
            self.consumer.pause(tp)
        if changed:  # one line per fault, not one per retry
            log_event(logging.ERROR, "fetch error: a record batch cannot be read; the partition waits at this offset "
                      "(nothing is skipped) and is fetched again with backoff",
                      **_where(tp), offset=offset, reason=reason, error=error[:300])  # fmt: skip
        else:
            log_event(logging.DEBUG, "fetch error again", **_where(tp), offset=offset, reason=reason,
                      failures=fault.failures, retry_in_seconds=fault.delay_s)
        self._on_change()

    def recovered(self, tp, first_offset: int | None) -> None:
        """Records of ``tp`` arrived (or, ``tp`` None, a poll passed): its fault is over."""
        fault = self.faults.clear(tp)
        if fault is None:
            return
        log_event(logging.INFO, "fetch recovered", **_where(tp), offset=first_offset, reason=fault.reason,
                  failures=fault.failures)
        self._on_change()

    def observe_waits(self, waiting: Waiting, assigned: Mapping) -> None:
        """Before the first assignment: whether the subscribed topics exist and the group coordinator answers."""
        if assigned:
            waiting.ready("topic")
            waiting.ready("group_coordinator")
            return
        try:
            known_topics = self.consumer._cluster.topics()
        except Exception:
            known_topics = set()
        missing = sorted(set(self.config.kafka.topics) - set(known_topics))
        if missing:
            waiting.wait("topic", f"not on the broker yet: {','.join(missing)}")
            if self._clock() >= self._metadata_due:  # look again soon, not at kafka-python's 5-minute refresh
                self._metadata_due = self._clock() + TOPIC_RECHECK_S
                with contextlib.suppress(Exception):
                    self.consumer._cluster.request_update()
        else:
            waiting.ready("topic")
        coordinator = getattr(self.consumer, "_coordinator", None)
        try:
            unknown = coordinator is None or coordinator.coordinator_unknown()
        except Exception:
            unknown = True
        if unknown and not missing:
            waiting.wait("group_coordinator", f"group {self.config.kafka.group_id}: no coordinator answers yet")
        elif not unknown:
            waiting.ready("group_coordinator")

    def observe(self, polled: dict, assigned: Mapping[object, PartitionState]) -> None:
        """Whether the broker answers, and each partition's lag (``nlpmon_consumer_lag``)."""
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
        for tp, part in assigned.items():
            try:
                hw = self.consumer.highwater(tp)
            except Exception:
                hw = None
            if hw is not None:
                part.highwater = hw
            if part.highwater is not None and part.next_offset is not None:
                self.sink.set_gauge("nlpmon_consumer_lag", "Records in the partition not yet consumed.",
                                    max(0, part.highwater - part.next_offset), topic=tp.topic, partition=str(tp.partition))


def _where(tp) -> dict:
    return {"topic": tp.topic, "partition": tp.partition} if tp is not None else {"topic": "unknown", "partition": "unknown"}
