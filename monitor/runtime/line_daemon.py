"""Run the pipeline over a line source (file or stdin) with metrics, signals and an orderly shutdown.

Shutdown order: see :mod:`monitor.runtime.shutdown` (end of input drains the same way as a first signal).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable
from typing import IO

import orjson
from prometheus_client import CollectorRegistry

from monitor.ab.experiments import log_experiment_result
from monitor.ab.labels import log_labels_result
from monitor.ab.shadow import log_shadow_result
from monitor.config import Config
from monitor.logs import log_event
from monitor.pipeline import Pipeline
from monitor.results import BatchResults, LabelsResult, WindowResult, iso_ms
from monitor.runtime.dead_letter import DeadLetterFile
from monitor.runtime.embedding_worker import set_embedding_gauges
from monitor.runtime.http import HttpServer
from monitor.runtime.shutdown import Shutdown
from monitor.runtime.sources import iter_batches, open_source
from monitor.runtime.wiring import build_components

__all__ = ["build_pipeline", "run_line_source", "result_line", "log_window"]


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


def log_window(result: WindowResult) -> None:
    drift = result.drift
    drifted = sorted(
        [f"input:{f.feature}" for f in (drift.input.features if drift.input is not None else ()) if f.drifted]
        + [k for k, d in (("confidence", drift.confidence), ("prediction", drift.prediction)) if d is not None and d.drifted]
    )
    log_event(
        logging.WARNING if result.drifted else logging.INFO,
        "window closed",
        model=result.model, version=result.version, window_start=iso_ms(result.window_start_ms),
        events=result.events, tested=result.tested, drifted=result.drifted,
        drifted_tests=",".join(drifted) or "-", partial=result.partial,
    )  # fmt: skip


def run_line_source(
    config: Config,
    *,
    path: str,
    output: IO[bytes] | None,
    serve_metrics: bool,
    shutdown: Shutdown | None = None,
    on_result: Callable[[WindowResult], None] | None = None,
) -> dict:
    """Process a JSONL file or stdin to the end (or until shutdown); return the run summary."""
    shutdown = shutdown or Shutdown()
    with contextlib.ExitStack() as stack:
        dead_letter = None
        if config.validation.dead_letter_path:
            dead_letter = DeadLetterFile(config.validation.dead_letter_path)
            stack.callback(dead_letter.close)
        pipeline, sink, registry = build_pipeline(config, dead_letter=dead_letter)
        if pipeline.texts is not None:
            stack.callback(pipeline.texts.embedder.close)
        store = None
        if config.output.store:
            from sinks.sql import SqlStore
            from sinks.sql.labels import upsert_label_results

            store = stack.enter_context(SqlStore(config.store.url, upgrade=config.store.auto_upgrade))
            store.check_schema()  # before any input: a schema behind with auto_upgrade off stops here (exit 2)
        if dead_letter is not None:
            dead_letter._on_write = sink.count_dead_letter
        stream, name = open_source(path)
        if stream is not sys.stdin.buffer:
            stack.callback(stream.close)
        if serve_metrics and config.metrics.enabled:
            server = HttpServer(
                registry,
                host=config.metrics.host,
                port=config.metrics.port,
                status=lambda: {"windows": [r.to_dict() for r in sink.latest_windows()], "stats": pipeline.stats.to_dict()},
            ).start()
            stack.callback(server.stop)
            log_event(logging.INFO, "serving metrics", url=f"http://{config.metrics.host}:{server.port}/metrics")

        def emit(closed: BatchResults) -> None:
            for r in closed.windows:
                log_window(r)
                if output is not None:
                    output.write(result_line(r))
                if on_result is not None:
                    on_result(r)
            for r in closed.labels:  # realised accuracy, each its own line (result_kind "labels")
                log_labels_result(r)
                if output is not None:
                    output.write(result_line(r))
            if output is not None and (closed.windows or closed.labels):
                output.flush()
            if store is not None and (closed.windows or closed.experiments or closed.shadow or closed.labels):
                # One transaction per batch, upserted by (model, version, window): a rerun of the same input
                # (after a crash, or on purpose) rewrites the same rows, so the store holds each window once.
                with store.transaction() as conn:
                    store.upsert_window_results(conn, closed.windows)
                    store.upsert_experiment_results(conn, closed.experiments)
                    store.upsert_shadow_results(conn, closed.shadow)
                    upsert_label_results(conn, closed.labels)
            # Experiment and shadow results go to Prometheus (through the sink), the log and, with
            # output.store, the SQL store (and so `nlpmon ab report`).
            for r in closed.experiments:
                log_experiment_result(r)
            for r in closed.shadow:
                log_shadow_result(r)

        idle_close_s, last_record = config.window.idle_close_seconds, time.monotonic()
        for batch in iter_batches(
            stream,
            name,
            config.source.batch_size,
            follow=config.source.follow,
            poll_interval=config.source.poll_interval_seconds,
            should_stop=lambda: shutdown.should_exit,
            path=None if path == "-" else path,
        ):
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
        return pipeline.stats.to_dict()
