"""Run the pipeline over a line source (file or stdin) with metrics, signals and an orderly shutdown.

Shutdown order (first SIGTERM/SIGINT, or end of input): stop reading → flush open windows (partial) →
write their results → flush the dead-letter file → stop the HTTP server. A second signal exits at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

import orjson
from prometheus_client import CollectorRegistry

from monitor import __version__
from monitor.config import Config
from monitor.dead_letter import DeadLetterFile
from monitor.http import HttpServer
from monitor.logs import log_event
from monitor.pipeline import ALL_REASONS, Pipeline
from monitor.reference import Profile, load_profile
from monitor.sources import iter_batches, open_source
from monitor.tokenizer import TokenizerFeaturizer
from sinks.prometheus import PrometheusSink

__all__ = ["Shutdown", "load_profiles", "build_pipeline", "run_line_source", "result_line"]


@dataclass
class Shutdown:
    """Signal handlers only set these flags (uvicorn's pattern); the loop acts on them."""

    should_exit: bool = False
    force_exit: bool = False
    _previous: dict = field(default_factory=dict)

    def install(self) -> "Shutdown":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.should_exit:
            self.force_exit = True
            # A second signal means "now": skip the orderly flush.
            os._exit(130 if signum == signal.SIGINT else 143)
        self.should_exit = True
        log_event(logging.INFO, "shutdown requested, draining", signal=signal.Signals(signum).name)


def load_profiles(paths) -> dict[str, Profile]:
    profiles: dict[str, Profile] = {}
    for path in paths:
        profile = load_profile(path)
        if profile.model in profiles:
            raise ValueError(f"two reference profiles for model {profile.model!r}: {path} and an earlier one")
        profiles[profile.model] = profile
    return profiles


def build_pipeline(config: Config, *, registry: CollectorRegistry | None = None, dead_letter=None):
    """Create the tokenizer, profiles, Prometheus sink and pipeline from a config (raises on bad setup)."""
    tokenizer = None
    if config.tokenizer.path:
        tokenizer = TokenizerFeaturizer(
            config.tokenizer.path, max_length=config.tokenizer.max_length, batch_size=config.tokenizer.batch_size
        )
    profiles = load_profiles(config.reference.paths)
    registry = registry if registry is not None else CollectorRegistry()
    sink = PrometheusSink(
        registry,
        max_streams=config.metrics.max_streams,
        max_classes=config.metrics.max_classes,
        build_version=__version__,
    )
    sink.preset_reasons(ALL_REASONS)
    pipeline = Pipeline(config, profiles=profiles, tokenizer=tokenizer, sink=sink, dead_letter=dead_letter)
    return pipeline, sink, registry


def result_line(result: dict) -> bytes:
    return orjson.dumps(result) + b"\n"


def _log_window(result: dict) -> None:
    drift = result["drift"]
    drifted = sorted(
        [f"input:{name}" for name, f in (drift["input"] or {}).get("features", {}).items() if f["drifted"]]
        + [k for k in ("confidence", "prediction") if drift[k] and drift[k]["drifted"]]
    )
    log_event(
        logging.WARNING if result["drifted"] else logging.INFO,
        "window closed",
        model=result["model"], version=result["version"], window_start=result["window_start"],
        events=result["events"], tested=result["tested"], drifted=result["drifted"],
        drifted_tests=",".join(drifted) or "-", partial=result["partial"],
    )  # fmt: skip


def _log_ab(pipeline: Pipeline) -> None:
    # Experiment and shadow results of a line source go to Prometheus (through the sink) and the log only;
    # the SQL store, and so `nlpmon ab report`, is fed by the Kafka sidecar.
    from monitor.experiments import log_ab_result

    for r in pipeline.take_ab_results():
        log_ab_result(r)


def run_line_source(
    config: Config,
    *,
    path: str,
    output: IO[bytes] | None,
    serve_metrics: bool,
    shutdown: Shutdown | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> dict:
    """Process a JSONL file or stdin to the end (or until shutdown); return the run summary."""
    shutdown = shutdown or Shutdown()
    with contextlib.ExitStack() as stack:
        dead_letter = None
        if config.validation.dead_letter_path:
            dead_letter = DeadLetterFile(config.validation.dead_letter_path)
            stack.callback(dead_letter.close)
        pipeline, sink, registry = build_pipeline(config, dead_letter=dead_letter)
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
                status=lambda: {"windows": sink.latest_windows(), "stats": pipeline.stats.to_dict()},
            ).start()
            stack.callback(server.stop)
            log_event(logging.INFO, "serving metrics", url=f"http://{config.metrics.host}:{server.port}/metrics")

        def emit(results: list[dict]) -> None:
            for r in results:
                _log_window(r)
                if output is not None:
                    output.write(result_line(r))
                if on_result is not None:
                    on_result(r)
            if output is not None and results:
                output.flush()

        for batch in iter_batches(
            stream,
            name,
            config.source.batch_size,
            follow=config.source.follow,
            poll_interval=config.source.poll_interval_seconds,
            should_stop=lambda: shutdown.should_exit,
        ):
            if batch:
                emit(pipeline.process(batch))
                _log_ab(pipeline)
            if shutdown.should_exit:
                break
        emit(pipeline.flush())
        _log_ab(pipeline)
        if dead_letter is not None:
            dead_letter.flush()
        return pipeline.stats.to_dict()
