"""Prometheus exposition of nlpmon's state (metric names and labels: docs/metrics.md).

One custom collector per area (events, windows, re-evaluation, experiments, shadow, daemon, realised
accuracy), all registered on ONE explicit ``CollectorRegistry``; each yields metric families from current state at scrape time
(prometheus client_python's "custom collector" pattern). :class:`PrometheusSink` owns them and the label
bounds they share, and is what the pipeline and daemons call. Collectors read the typed results'
fields (``monitor.results``); they count and format, and compute no statistics.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry

from monitor.results import ExperimentResult, LabelsResult, ShadowResult, WindowResult
from sinks.prometheus.daemon import DaemonCollector
from sinks.prometheus.events import CONFIDENCE_BUCKETS, LATENCY_BUCKETS_SECONDS, LENGTH_BUCKETS_TOKENS, EventsCollector
from sinks.prometheus.experiments import ExperimentsCollector
from sinks.prometheus.labels import OTHER, LabelBounds
from sinks.prometheus.realised import LABEL_JOIN_OUTCOMES, REALISED_GAUGES, RealisedCollector
from sinks.prometheus.reeval import REEVAL_GAUGES, REEVAL_RUN_OUTCOMES, ReevalCollector
from sinks.prometheus.shadow import SHADOW_GAUGES, SHADOW_JOIN_OUTCOMES, ShadowCollector
from sinks.prometheus.windows import WindowsCollector

__all__ = ["PrometheusSink", "OTHER", "LATENCY_BUCKETS_SECONDS", "CONFIDENCE_BUCKETS", "LENGTH_BUCKETS_TOKENS",
           "REEVAL_GAUGES", "REEVAL_RUN_OUTCOMES", "SHADOW_GAUGES", "SHADOW_JOIN_OUTCOMES", "LabelBounds",
           "EventsCollector", "WindowsCollector", "ReevalCollector", "ExperimentsCollector", "ShadowCollector",
           "DaemonCollector", "RealisedCollector", "REALISED_GAUGES", "LABEL_JOIN_OUTCOMES"]


class PrometheusSink:
    """Every exported value, by area; the constructor registers one collector per area on ``registry``."""

    def __init__(self, registry: CollectorRegistry, *, max_streams: int = 20, max_classes: int = 50, build_version: str = "",
                 latency_buckets: tuple[float, ...] = LATENCY_BUCKETS_SECONDS):
        self.bounds = LabelBounds(max_streams=max_streams, max_classes=max_classes)
        self.events = EventsCollector(self.bounds, latency_buckets=latency_buckets)
        self.windows = WindowsCollector(self.bounds)
        self.reeval = ReevalCollector(self.bounds)
        self.experiments = ExperimentsCollector(self.bounds)
        self.shadow = ShadowCollector(self.bounds)
        self.realised = RealisedCollector(self.bounds)
        self.daemon = DaemonCollector(self.bounds, build_version=build_version)
        # Registration order is exposition order: the same as when this was one collector.
        for collector in (self.events, self.windows, self.reeval, self.experiments, self.shadow, self.daemon,
                          self.realised):
            registry.register(collector)

    # -- the pipeline (monitor.pipeline.Sink) ----------------------------------------------------------------
    def observe_batch(self, model, version, *, classes, errors, latency_ms, confidence, lengths, last_ts_ms,
                      segment: str = "") -> None:
        # The event histograms are per (model, version): a segment's events count in its stream's.
        self.events.observe_batch(model, version, classes=classes, errors=errors, latency_ms=latency_ms,
                                  confidence=confidence, lengths=lengths, last_ts_ms=last_ts_ms)

    def window_closed(self, result: WindowResult) -> None:
        self.windows.window_closed(result)

    def experiment_closed(self, result: ExperimentResult) -> None:
        """Keep an experiment's latest result for its nlp_experiment_* gauges."""
        self.experiments.experiment_closed(result)

    def shadow_closed(self, result: ShadowResult) -> None:
        """Keep a served model's latest shadow-join result for the nlp_shadow_* gauges."""
        self.shadow.shadow_closed(result)

    def count_shadow_joins(self, deltas: Mapping[str, int]) -> None:
        """Add to ``nlpmon_shadow_events_total`` by outcome; the first call creates every series."""
        self.shadow.count_joins(deltas)

    def set_shadow_pending(self, n: int) -> None:
        self.shadow.set_pending(n)

    def labels_closed(self, result: LabelsResult) -> None:
        """Keep a stream's latest labels result for the nlp_realised_* gauges."""
        self.realised.labels_closed(result)

    def count_label_joins(self, deltas: Mapping[str, int]) -> None:
        """Add to ``nlpmon_label_join_events_total`` by outcome; the first call creates every series."""
        self.realised.count_joins(deltas)

    def set_label_pending(self, n: int) -> None:
        self.realised.set_pending(n)

    def count_records(self, consumed: int, valid: int) -> None:
        self.daemon.count_records(consumed, valid)

    def count_invalid(self, reason: str, n: int = 1) -> None:
        self.daemon.count_invalid(reason, n)

    def count_late(self, model: str, version: str, n: int, *, segment: str = "") -> None:
        self.daemon.count_late(model, version, n)

    def set_open_windows(self, n: int) -> None:
        self.daemon.set_open_windows(n)

    def count_untracked(self, n: int) -> None:
        """Count events of streams over ``metrics.max_tracked_streams`` (``nlpmon_events_untracked_total``)."""
        self.daemon.count_untracked(n)

    def count_segment_folded(self, n: int) -> None:
        """Count events of segments over ``window.max_segments`` (``nlpmon_events_segment_folded_total``)."""
        self.daemon.count_segment_folded(n)

    def forget_stream(self, model: str, version: str, *, segment: str = "") -> None:
        """A stream left the pipeline (``metrics.stream_ttl_seconds``): drop its series, free its label slot.
        A segment's stream drops its own per-window series only: the (model, version) slot is its stream's."""
        if segment:
            with self.bounds.lock:
                labels = self.bounds.stream_labels(model, version)
                if labels is not None:
                    self.windows.forget(labels, segment)
                    self.reeval.forget(labels, segment)
            return
        with self.bounds.lock:
            labels = self.bounds.forget(model, version)
            if labels is not None:
                for collector in (self.events, self.windows, self.reeval, self.daemon):
                    collector.forget(labels)

    # -- the daemons -------------------------------------------------------------------------------------------
    def preset_reasons(self, reasons) -> None:
        """Create a zero series per rejection reason, so dashboards show 0 instead of "no data"."""
        self.daemon.preset_reasons(reasons)

    def count_dead_letter(self, n: int = 1) -> None:
        self.daemon.count_dead_letter(n)

    def count_fetch_error(self, reason: str, n: int = 1) -> None:
        """Count a fetch whose record batch could not be read (``n=0`` creates the zero series of a reason)."""
        self.daemon.count_fetch_error(reason, n)

    def set_gauge(self, name: str, doc: str, value: float, **labels: str) -> None:
        """Set a daemon-state gauge (e.g. ``nlpmon_kafka_connected``) exported alongside the rest."""
        self.daemon.set_gauge(name, doc, value, **labels)

    def set_counter(self, name: str, doc: str, value: float, **labels: str) -> None:
        """Export a cumulative count kept elsewhere (e.g. the encoder's failures) as the counter ``<name>_total``."""
        self.daemon.set_counter(name, doc, value, **labels)

    def latest_windows(self) -> list[WindowResult]:
        """The latest closed window of each stream (``/status`` turns them into JSON)."""
        return self.windows.latest()

    # -- re-evaluation -----------------------------------------------------------------------------------------
    def set_reeval(self, model: str, version: str, dataset: str, values: dict[str, float | None]) -> None:
        """Replace the ``nlp_reeval_*`` gauges of (model, version, dataset); keys of ``values`` are
        :data:`REEVAL_GAUGES` names, a ``None`` value leaves that gauge out."""
        self.reeval.set_reeval(model, version, dataset, values)

    def count_reeval_run(self, outcome: str, n: int = 1) -> None:
        """Count a re-evaluation run by outcome; the first call (any ``n``, 0 included) creates every series."""
        self.reeval.count_run(outcome, n)

    def set_estimated_accuracy(self, model: str, version: str, value: float, *, segment: str = "",
                               interval=None) -> None:
        """Set the accuracy estimate of a stream's (or one of its segments') latest closed window, and its
        ``interval`` (low, high, reliable) when it has one."""
        self.reeval.set_estimated_accuracy(model, version, value, segment=segment, interval=interval)
