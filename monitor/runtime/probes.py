"""What the Kafka daemon says about itself: ``/readyz``, ``/status`` and its gauges (docs/metrics.md).

Read from the daemon's parts at the moment they change or are asked for; nothing here changes them.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Protocol

from prometheus_client import CollectorRegistry

from monitor.config import Config
from monitor.logs import log_event
from monitor.runtime.checkpointer import Checkpointer
from monitor.runtime.consumer import Fetcher, partition_name
from monitor.runtime.embedding_worker import set_embedding_gauges
from monitor.runtime.heartbeat import Heartbeat
from monitor.runtime.http import HttpServer
from monitor.runtime.partitions import PartitionState
from monitor.runtime.startup import Waiting
from monitor.runtime.wiring import Components
from sinks.prometheus import PrometheusSink

__all__ = ["DaemonParts", "serve", "serve_report", "post_reeval", "readiness", "status", "set_gauges"]


class DaemonParts(Protocol):
    """The parts of :class:`~monitor.runtime.kafka_daemon.KafkaDaemon` the probes read."""

    config: Config
    registry: CollectorRegistry
    sink: PrometheusSink
    partitions: dict[object, PartitionState]
    components: Components | None
    fetcher: Fetcher
    checkpointer: Checkpointer
    reeval: object | None
    heartbeat: Heartbeat
    waiting: Waiting
    paused: bool
    pending_events: int


def serve(d: DaemonParts, stack: contextlib.ExitStack) -> int:
    """Serve /metrics, /healthz, /readyz, /status (and POST /reeval with re-evaluation) until ``stack`` closes; the port."""
    m = d.config.metrics
    server = HttpServer(d.registry, host=m.host, port=m.port, readiness=lambda: readiness(d), status=lambda: status(d),
                        liveness=d.heartbeat.check,
                        post_handlers={"/reeval": lambda *a: post_reeval(d, *a)}
                        if d.config.reeval.enabled else None).start()
    stack.callback(server.stop)
    log_event(logging.INFO, "serving metrics", url=f"http://{m.host}:{server.port}/metrics")
    return server.port


def serve_report(config: Config, store, stack: contextlib.ExitStack, *, profiles: dict) -> int:
    """Serve the report pages over ``store`` (``[report]``, docs/report.md) until ``stack`` closes; the port.

    ``profiles``: the daemon's file profiles by model, the reference of a model without one active in the store."""
    from monitor.report.server import ReportServer

    r = config.report
    server = stack.enter_context(ReportServer(store, host=r.host, port=r.port, profiles=profiles))
    log_event(logging.INFO, "serving reports", url=f"http://{r.host}:{server.port}/")
    return server.port


def post_reeval(d: DaemonParts, headers: dict, body: bytes, client_host: str) -> tuple[int, dict]:
    """``POST /reeval``; 503 while the daemon starts: the server answers before the scheduler exists, because
    /readyz must answer while the daemon waits for its broker or database."""
    if d.reeval is None:
        return 503, {"status": "starting", "error": "re-evaluation starts once the daemon has started; retry",
                     "waiting_for": d.waiting.reason() or "startup"}
    return d.reeval.handle_post(headers, body, client_host)


def readiness(d: DaemonParts) -> tuple[bool, dict]:
    """``/readyz``: ready while broker and database answer, partitions are assigned and none waits."""
    kafka, db, faults = d.fetcher.kafka_connected, d.checkpointer.db_connected, d.fetcher.faults
    checks = {"kafka_connected": kafka, "db_connected": db, "assigned_partitions": len(d.partitions),
              "paused": d.paused, "fetch_errors": faults.checks(partition_name)}
    if d.waiting.reasons:  # broker, topic, group coordinator or database not there yet (docs/kafka.md)
        checks["waiting_for"] = d.waiting.reason()
    publisher = d.checkpointer.publisher
    if publisher is not None and publisher.failing:  # degraded, still ready: the results are in SQL already
        checks["degraded"] = publisher.degraded()
    return kafka and db and bool(d.partitions) and not d.paused and not faults, checks


def status(d: DaemonParts) -> dict:
    """``/status``: the latest windows, each partition's offsets and waiting results, readiness, re-evaluation."""
    return {
        "windows": [r.to_dict() for r in d.sink.latest_windows()],
        "partitions": {f"{tp.topic}/{tp.partition}": {"next_offset": p.next_offset, "committed_offset": p.committed_offset,
                                                       "pending_results": len(p.pending), "open_windows": p.pipeline.open_windows}
                       for tp, p in d.partitions.items()},
        "ready": readiness(d)[1],
        "liveness": d.heartbeat.status(),
        **({"reeval": d.reeval.status()} if d.reeval else {}),
    }  # fmt: skip


def set_gauges(d: DaemonParts) -> None:
    """The daemon's gauges, from its current state."""
    s, parts = d.sink, d.partitions.values()
    s.set_gauge("nlpmon_kafka_connected", "1 while the broker (group coordinator) is reachable.", float(d.fetcher.kafka_connected))
    s.set_gauge("nlpmon_db_connected", "1 while the SQL store accepts checkpoints.", float(d.checkpointer.db_connected))
    s.set_gauge("nlpmon_consumption_paused", "1 while consumption is paused for backpressure.", float(d.paused))
    s.set_gauge("nlpmon_assigned_partitions", "Partitions assigned to this consumer.", float(len(d.partitions)))
    s.set_gauge("nlpmon_ready", "1 when /readyz answers 200.", float(readiness(d)[0]))
    s.set_gauge("nlpmon_pending_events", "Records consumed since the last durable checkpoint.", float(d.pending_events))
    s.set_open_windows(sum(p.pipeline.open_windows for p in parts))
    set_embedding_gauges(s, d.components.embedder if d.components else None, [p.pipeline for p in parts])
    if d.config.shadow.enabled:
        s.set_shadow_pending(sum(p.pipeline.shadow.joiner.pending for p in parts))
    if d.config.labels.enabled:  # the sum over partitions, as for shadow joins
        s.set_label_pending(sum(p.pipeline.labels.pending for p in parts))
