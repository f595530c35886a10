"""Metrics about nlpmon itself: records consumed/valid/invalid/late, dead letters, fetch errors, label folds,
open windows, build info, the daemon-state gauges the Kafka sidecar sets (``set_gauge``) and the cumulative
counts other parts of the daemon own (``set_counter``).

There is no ``nlpmon_up``: Prometheus writes ``up`` for every target it scrapes, and a gauge that a process
can only export while it runs says nothing ``up`` does not."""

from __future__ import annotations

from collections import Counter

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sinks.prometheus.labels import LabelBounds

__all__ = ["DaemonCollector"]


class DaemonCollector:
    """``nlpmon_*`` of the process (the re-evaluation and shadow ones live with their areas)."""

    def __init__(self, bounds: LabelBounds, *, build_version: str = ""):
        self._bounds = bounds
        self._build_version = build_version
        self._consumed = 0
        self._valid = 0
        self._invalid: Counter[str] = Counter()
        self._late: Counter[tuple[str, str]] = Counter()
        self._dead_letter = 0
        self._untracked = 0
        self._segment_folded = 0
        self._fetch_errors: Counter[str] = Counter()  # reason -> failed fetches (Kafka daemon only)
        self._open_windows = 0
        self._gauges: dict[str, tuple[str, tuple[str, ...], dict[tuple[str, ...], float]]] = {}
        self._counters: dict[str, tuple[str, tuple[str, ...], dict[tuple[str, ...], float]]] = {}

    def preset_reasons(self, reasons) -> None:
        with self._bounds.lock:
            for r in reasons:
                self._invalid[r] += 0

    def count_records(self, consumed: int, valid: int) -> None:
        with self._bounds.lock:
            self._consumed += consumed
            self._valid += valid

    def count_invalid(self, reason: str, n: int = 1) -> None:
        with self._bounds.lock:
            self._invalid[reason] += n

    def count_segment_folded(self, n: int) -> None:
        with self._bounds.lock:
            self._segment_folded += n

    def count_late(self, model: str, version: str, n: int) -> None:
        with self._bounds.lock:
            self._late[self._bounds.stream(model, version)] += n

    def count_untracked(self, n: int) -> None:
        with self._bounds.lock:
            self._untracked += n

    def forget(self, labels: tuple[str, str]) -> None:
        self._late.pop(labels, None)

    def count_dead_letter(self, n: int = 1) -> None:
        with self._bounds.lock:
            self._dead_letter += n

    def count_fetch_error(self, reason: str, n: int = 1) -> None:
        with self._bounds.lock:
            self._fetch_errors[reason] += n

    def set_open_windows(self, n: int) -> None:
        self._open_windows = n

    def set_gauge(self, name: str, doc: str, value: float, **labels: str) -> None:
        with self._bounds.lock:
            entry = self._gauges.get(name)
            if entry is None:
                entry = self._gauges[name] = (doc, tuple(sorted(labels)), {})
            entry[2][tuple(labels[k] for k in entry[1])] = float(value)

    def set_counter(self, name: str, doc: str, value: float, **labels: str) -> None:
        """Export a count that another object keeps (it only grows) as the counter ``<name>_total``."""
        if name.endswith("_total"):
            raise ValueError(f"give the counter's name without _total (it is added): {name!r}")
        with self._bounds.lock:
            entry = self._counters.get(name)
            if entry is None:
                entry = self._counters[name] = (doc, tuple(sorted(labels)), {})
            entry[2][tuple(labels[k] for k in entry[1])] = float(value)

    def collect(self):
        with self._bounds.lock:
            yield from self._collect()

    def _collect(self):
        c = CounterMetricFamily("nlpmon_events_consumed", "Records read from the source, valid or not.")
        c.add_metric([], self._consumed)
        yield c
        c = CounterMetricFamily("nlpmon_events_valid", "Records that passed validation.")
        c.add_metric([], self._valid)
        yield c
        c = CounterMetricFamily("nlpmon_events_invalid", "Records rejected by validation, by reason.", labels=["reason"])
        for reason, n in sorted(self._invalid.items()):
            c.add_metric([reason], n)
        yield c
        c = CounterMetricFamily("nlpmon_events_late", "Events that arrived after their window closed.", labels=["model", "version"])
        for (m, v), n in sorted(self._late.items()):
            c.add_metric([m, v], n)
        yield c
        c = CounterMetricFamily("nlpmon_events_untracked", "Events of streams over metrics.max_tracked_streams, "
                                "windowed together as __other__.")
        c.add_metric([], self._untracked)
        yield c
        c = CounterMetricFamily("nlpmon_events_segment_folded", "Events of a model's segments over "
                                "window.max_segments, windowed together as segment __other__.")
        c.add_metric([], self._segment_folded)
        yield c
        c = CounterMetricFamily("nlpmon_dead_letter", "Records written to the dead-letter destination.")
        c.add_metric([], self._dead_letter)
        yield c
        if self._fetch_errors:
            c = CounterMetricFamily("nlpmon_fetch_errors", "Fetches whose record batch could not be read, by reason.",
                                    labels=["reason"])
            for reason, n in sorted(self._fetch_errors.items()):
                c.add_metric([reason], n)
            yield c
        c = CounterMetricFamily("nlpmon_label_values_folded", "Label values folded into __other__.", labels=["label"])
        for label in ("stream", "prediction_class", "experiment"):
            c.add_metric([label], self._bounds.folded[label])
        yield c
        g = GaugeMetricFamily("nlpmon_open_windows", "Windows currently open.")
        g.add_metric([], self._open_windows)
        yield g
        # `nlpmon_version`, not `version`: `version` is the model version on every nlp_* series.
        g = GaugeMetricFamily("nlpmon_build_info", "nlpmon build information.", labels=["nlpmon_version"])
        g.add_metric([self._build_version], 1.0)
        yield g
        for name, (doc, keys, values) in sorted(self._counters.items()):
            c = CounterMetricFamily(name, doc, labels=list(keys))
            for lv, value in sorted(values.items()):
                c.add_metric(list(lv), value)
            yield c
        for name, (doc, keys, values) in sorted(self._gauges.items()):
            g = GaugeMetricFamily(name, doc, labels=list(keys))
            for lv, value in sorted(values.items()):
                g.add_metric(list(lv), value)
            yield g
