"""Run the pipeline over a line source (file or stdin) with metrics, signals and an orderly shutdown.

Shutdown order: see :mod:`monitor.runtime.shutdown` (end of input drains the same way as a first signal).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

import orjson
from prometheus_client import CollectorRegistry

from monitor.config import Config
from monitor.logs import log_event
from monitor.pipeline import Pipeline
from monitor.results import BatchResults, LabelsResult, PipelineStats, WindowResult
from monitor.runtime.dead_letter import DeadLetterFile
from monitor.runtime.embedding_worker import set_embedding_gauges
from monitor.runtime.http import HttpServer
from monitor.runtime.result_log import log_experiment_result, log_labels_result, log_shadow_result, log_window
from monitor.runtime.shutdown import Shutdown
from monitor.runtime.sources import iter_batches, open_source
from monitor.runtime.heartbeat import Heartbeat
from monitor.runtime.startup import INITIAL_DELAY_S, MAX_DELAY_S, NotYet, Waiting, sleep_unless_stopped, wait_for
from monitor.runtime.wiring import build_components, freeze_startup_objects, one_blas_thread

__all__ = ["build_pipeline", "run_line_source", "result_line", "RunSummary"]


@dataclass(frozen=True)
class RunSummary:
    """What a line-source run counted; :meth:`to_dict` is the JSON the CLI prints (its shape is what scripts parse)."""

    lines: int
    valid: int
    invalid_by_reason: tuple[tuple[str, int], ...]  # sorted by reason
    late: int
    windows: int
    internal_errors: tuple[tuple[str, int], ...] = ()  # by stage, sorted; never the message
    untracked: int = 0
    segment_folded: int = 0
    labels: int = 0

    @classmethod
    def from_stats(cls, stats: PipelineStats) -> RunSummary:
        return cls(lines=stats.lines, valid=stats.valid, invalid_by_reason=tuple(sorted(stats.invalid.items())),
                   late=stats.late, windows=stats.windows, internal_errors=tuple(sorted(stats.internal_errors.items())),
                   untracked=stats.untracked, segment_folded=stats.segment_folded, labels=stats.labels)

    def to_dict(self) -> dict:
        return {
            "lines": self.lines,
            "valid": self.valid,
            "invalid": sum(n for _, n in self.invalid_by_reason),
            "invalid_by_reason": dict(self.invalid_by_reason),
            "late": self.late,
            "windows": self.windows,
            # Only when they happened: the summary's shape stays what scripts parse.
            **({"internal_errors": dict(self.internal_errors)} if self.internal_errors else {}),
            **({"untracked": self.untracked} if self.untracked else {}),
            **({"segment_folded": self.segment_folded} if self.segment_folded else {}),
            **({"labels": self.labels} if self.labels else {}),
        }


def build_pipeline(config: Config, *, registry: CollectorRegistry | None = None, dead_letter=None):
    """Create the tokenizer, profiles, Prometheus sink and pipeline from a config (raises on bad setup); the
    pipeline's ``texts.embedder`` (with ``[embedding] model``) is a worker thread the caller closes."""
    c = build_components(config, registry=registry)
    try:
        pipeline = Pipeline(config, profiles=c.profiles, tokenizer=c.tokenizer, sink=c.sink, dead_letter=dead_letter,
                            embedder=c.embedder)
    except Exception:
        if c.embedder is not None:
            c.embedder.close()
        raise
    return pipeline, c.sink, c.registry


def result_line(result: WindowResult | LabelsResult) -> bytes:
    """One line of replay output: the edge where a window result becomes JSON (docs/results.md)."""
    return orjson.dumps(result.to_dict()) + b"\n"


def run_line_source(
    config: Config,
    *,
    path: str,
    output: IO[bytes] | None,
    serve_metrics: bool,
    shutdown: Shutdown | None = None,
    on_result: Callable[[WindowResult | LabelsResult], None] | None = None,
) -> RunSummary:
    """Process a JSONL file or stdin to the end (or until shutdown); return the run summary.

    ``on_result`` is called with each window result and each labels result, in closing order.
    """
    shutdown = shutdown or Shutdown()
    with contextlib.ExitStack() as stack:
        one_blas_thread(stack)
        dead_letter = None
        if config.validation.dead_letter_path:
            dead_letter = DeadLetterFile(config.validation.dead_letter_path)
            stack.callback(dead_letter.close)
        pipeline, sink, registry = build_pipeline(config, dead_letter=dead_letter)
        heartbeat = Heartbeat(config.probe.stall_seconds, loop="line loop")
        if pipeline.texts is not None:
            stack.callback(pipeline.texts.embedder.close)
            pipeline.texts.embedder.on_progress = heartbeat.beat  # covers the loop at an embedding barrier
        waiting = Waiting(sink)
        if serve_metrics and config.metrics.enabled:  # first: /readyz says what the daemon waits for
            _serve_metrics(config, stack, registry, readiness=lambda: _readiness(waiting), liveness=heartbeat.check,
                           status=lambda: {"windows": [r.to_dict() for r in sink.latest_windows()],
                                           "stats": pipeline.stats.to_dict(), "liveness": heartbeat.status()})
        store = None
        if config.output.store:
            with heartbeat.waiting("database (at start)"):
                store = _wait_store(config, stack, shutdown, waiting)
            if store is None:  # a shutdown while waiting for the database: nothing was read
                log_event(logging.INFO, "stopped while waiting; nothing was read")
                return RunSummary.from_stats(pipeline.stats)
        if dead_letter is not None:
            dead_letter.on_write = sink.count_dead_letter
        stream, name = open_source(path)
        if stream is not sys.stdin.buffer:
            stack.callback(stream.close)
        emit = _Emitter(output, store, on_result, shutdown=shutdown, heartbeat=heartbeat)
        freeze_startup_objects(stack)
        idle_close_s, last_record = config.window.idle_close_seconds, time.monotonic()
        batches = iter_batches(
            stream,
            name,
            config.source.batch_size,
            follow=config.source.follow,
            poll_interval=config.source.poll_interval_seconds,
            should_stop=lambda: shutdown.should_exit,
            path=None if path == "-" else path,
        )
        while True:
            with heartbeat.waiting("input"):  # waiting for lines is not a stall
                batch = next(batches, None)
            if batch is None:
                break
            heartbeat.beat()
            if batch:
                emit(pipeline.process(batch))
                last_record = time.monotonic()
                if pipeline.texts is not None:
                    set_embedding_gauges(sink, pipeline.texts.embedder, [pipeline])
            elif idle_close_s and time.monotonic() - last_record >= idle_close_s:
                # A followed file that went quiet: event time follows the wall clock (docs/results.md).
                emit(pipeline.close_idle(int((time.monotonic() - last_record) * 1000)))
            if shutdown.should_exit:
                break
        emit(pipeline.flush())
        if dead_letter is not None:
            dead_letter.flush()
        return RunSummary.from_stats(pipeline.stats)


def _wait_store(config: Config, stack: contextlib.ExitStack, shutdown: Shutdown, waiting: Waiting):
    """The SQL store once its database answers (docs/kafka.md, "Start in any order"); None: shutdown first."""
    from sinks.sql import SqlStore, StoreUnavailable

    store = stack.enter_context(SqlStore(config.store.url, upgrade=config.store.auto_upgrade))

    def attempt() -> SqlStore:
        try:
            store.check_schema()  # a schema behind with store.auto_upgrade off raises SchemaBehind (exit 2)
        except StoreUnavailable as exc:
            raise NotYet(str(exc)[:200]) from None
        return store

    return wait_for("database", attempt, shutdown=shutdown, waiting=waiting,
                    timeout_s=config.store.startup_timeout_seconds)


def _readiness(waiting: Waiting) -> tuple[bool, dict]:
    """``/readyz``: 503 while the database is waited for at start, with the reason (as the Kafka sidecar's)."""
    return (False, {"waiting_for": waiting.reason()}) if waiting.reasons else (True, {})


def _serve_metrics(config: Config, stack: contextlib.ExitStack, registry: CollectorRegistry, *, readiness,
                   status, liveness) -> None:
    server = HttpServer(registry, host=config.metrics.host, port=config.metrics.port, readiness=readiness,
                        status=status, liveness=liveness).start()
    stack.callback(server.stop)
    log_event(logging.INFO, "serving metrics", url=f"http://{config.metrics.host}:{server.port}/metrics")


class _Emitter:
    """Where a batch's closed results go: the log, the JSON-lines output, ``on_result`` and the SQL store."""

    def __init__(self, output: IO[bytes] | None, store, on_result: Callable[[WindowResult | LabelsResult], None] | None,
                 *, shutdown: Shutdown, heartbeat: Heartbeat):
        self.output, self.store, self.on_result = output, store, on_result
        self.shutdown, self.heartbeat = shutdown, heartbeat

    def __call__(self, closed: BatchResults) -> None:
        for r in closed.windows:
            log_window(r)
            self._output(result_line(r))
            if self.on_result is not None:
                self.on_result(r)
        for r in closed.labels:  # realised accuracy, each its own line (result_kind "labels")
            log_labels_result(r)
            self._output(result_line(r))
            if self.on_result is not None:
                self.on_result(r)
        if closed.windows or closed.labels:
            self._output(b"", flush=True)
        if self.store is not None and (closed.windows or closed.experiments or closed.shadow or closed.labels):
            with self.heartbeat.waiting("database"):
                self._store(closed)
        # Experiment and shadow results go to Prometheus (through the sink), the log and, with
        # output.store, the SQL store (and so `nlpmon ab report`).
        for r in closed.experiments:
            log_experiment_result(r)
        for r in closed.shadow:
            log_shadow_result(r)

    def _output(self, line: bytes, *, flush: bool = False) -> None:
        if self.output is None:
            return
        with self.heartbeat.waiting("output"):  # a slow reader of a pipe is backpressure, not a stall
            if line:
                self.output.write(line)
            if flush:
                self.output.flush()

    def _store(self, closed: BatchResults) -> None:
        """Write a batch's results; while the database does not answer, retry with backoff (reading waits)."""
        from sinks.sql import StoreUnavailable

        delay = INITIAL_DELAY_S
        while True:
            try:
                self._write(closed)
                if delay > INITIAL_DELAY_S:
                    log_event(logging.INFO, "database reachable again")
                return
            except StoreUnavailable as exc:
                if delay == INITIAL_DELAY_S:
                    log_event(logging.WARNING, "database unreachable; reading waits until it answers", error=str(exc)[:200])
            if not sleep_unless_stopped(delay, self.shutdown):
                log_event(logging.ERROR, "shutdown while the database is unreachable; these results are not stored",
                          windows=len(closed.windows))  # fmt: skip
                return
            delay = min(delay * 2, MAX_DELAY_S)

    def _write(self, closed: BatchResults) -> None:
        from sinks.sql.labels import upsert_label_results

        # One transaction per batch, upserted by (model, version, window): a rerun of the same input
        # (after a crash, or on purpose) rewrites the same rows, so the store holds each window once.
        with self.store.transaction() as conn:
            self.store.upsert_window_results(conn, closed.windows)
            self.store.upsert_experiment_results(conn, closed.experiments)
            self.store.upsert_shadow_results(conn, closed.shadow)
            upsert_label_results(conn, closed.labels)
