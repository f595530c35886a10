"""Per-event metrics: predictions by class, errors, latency/confidence/length histograms, newest event time.

Updates arrive per *batch*: histogram buckets are counted with numpy, which is what lets the pipeline export
per-event histograms at 100k+ events/s where one ``Histogram.observe`` call per event and metric would cost
more than the rest of the pipeline.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from sinks.prometheus.labels import LabelBounds

__all__ = ["EventsCollector", "LATENCY_BUCKETS_SECONDS", "CONFIDENCE_BUCKETS", "LENGTH_BUCKETS_TOKENS"]

# The default of metrics.latency_buckets_seconds (docs/config.md).
LATENCY_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
LENGTH_BUCKETS_TOKENS = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.counts = np.zeros(len(bounds) + 1, dtype=np.int64)  # last slot: above the largest bound
        self.total = 0.0

    def add(self, values: np.ndarray) -> None:
        values = values[np.isfinite(values)]
        if values.size:
            # side="left": a value equal to a bound belongs to that bound's bucket (Prometheus `le`).
            self.counts += np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=self.counts.size)
            self.total += float(values.sum())

    def buckets(self) -> list[tuple[str, int]]:
        cumulative = np.cumsum(self.counts)
        out = [(repr(float(b)), int(c)) for b, c in zip(self.bounds, cumulative[:-1])]
        out.append(("+Inf", int(cumulative[-1])))
        return out


class EventsCollector:
    """``nlp_predictions_total`` ... ``nlp_last_event_timestamp_seconds``."""

    def __init__(self, bounds: LabelBounds, *, latency_buckets: tuple[float, ...] = LATENCY_BUCKETS_SECONDS):
        self._bounds = bounds
        self._latency_buckets = tuple(latency_buckets)
        self._predictions: Counter[tuple[str, str, str]] = Counter()
        self._errors: Counter[tuple[str, str]] = Counter()
        self._latency: dict[tuple[str, str], _Histogram] = {}
        self._confidence: dict[tuple[str, str], _Histogram] = {}
        self._lengths: dict[tuple[str, str], _Histogram] = {}
        self._last_event: dict[tuple[str, str], float] = {}

    def observe_batch(self, model, version, *, classes, errors, latency_ms, confidence, lengths, last_ts_ms) -> None:
        b = self._bounds
        with b.lock:
            s = b.stream(model, version)
            for cls, n in classes.items():
                if cls is not None:
                    self._predictions[(s[0], s[1], b.prediction_class(s, cls))] += n
            if errors:
                self._errors[s] += errors
            _hist(self._latency, s, self._latency_buckets).add(latency_ms / 1000.0)
            _hist(self._confidence, s, CONFIDENCE_BUCKETS).add(confidence)
            _hist(self._lengths, s, LENGTH_BUCKETS_TOKENS).add(lengths)
            ts = last_ts_ms / 1000.0
            if ts > self._last_event.get(s, 0.0):
                self._last_event[s] = ts

    def forget(self, labels: tuple[str, str]) -> None:
        for key in [k for k in self._predictions if k[:2] == labels]:
            del self._predictions[key]
        for store in (self._errors, self._latency, self._confidence, self._lengths, self._last_event):
            store.pop(labels, None)

    def collect(self):
        with self._bounds.lock:
            yield from self._collect()

    def _collect(self):
        sv = ["model", "version"]
        preds = CounterMetricFamily("nlp_predictions", "Predictions seen, by predicted class.", labels=sv + ["prediction_class"])
        for (m, v, c), n in sorted(self._predictions.items()):
            preds.add_metric([m, v, c], n)
        yield preds
        errors = CounterMetricFamily("nlp_prediction_errors", "Prediction events that carried an error.", labels=sv)
        for (m, v), n in sorted(self._errors.items()):
            errors.add_metric([m, v], n)
        yield errors
        for name, doc, store in (
            ("nlp_prediction_latency_seconds", "Serving latency of predictions.", self._latency),
            ("nlp_prediction_confidence", "Confidence of predictions.", self._confidence),
            ("nlp_input_length_tokens", "Input length in tokenizer tokens (whitespace words without a tokenizer).", self._lengths),
        ):
            fam = HistogramMetricFamily(name, doc, labels=sv)
            for (m, v), h in sorted(store.items()):
                fam.add_metric([m, v], h.buckets(), h.total)
            yield fam
        last = GaugeMetricFamily("nlp_last_event_timestamp_seconds", "Event time of the newest valid event.", labels=sv)
        for (m, v), ts in sorted(self._last_event.items()):
            last.add_metric([m, v], ts)
        yield last


def _hist(store: dict, key, bounds) -> _Histogram:
    h = store.get(key)
    if h is None:
        h = store[key] = _Histogram(bounds)
    return h
