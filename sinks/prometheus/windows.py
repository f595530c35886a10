"""Per-window gauges: the latest closed window of each stream, read from its WindowResult's fields.

A stream is (model, version, segment). The label ``segment`` is exported once any stream has a segment
(window.by_segment), bounded by window.max_segments per model; the segment-less stream's value is "", which
Prometheus treats as no label at all, so leaving the label out while no stream has one exports the same
series and keeps the segment-less /metrics exactly what it was.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from monitor.results import DriftVerdicts, WindowResult
from sinks.prometheus.labels import OTHER, LabelBounds

__all__ = ["WindowsCollector"]

# Label `stat` (not `quantile`: that label is for summaries, and promtool check metrics rejects it on a gauge).
_LATENCY_STATS = ("p50", "p95", "p99", "max")


class WindowsCollector:
    """``nlp_window_*``, ``nlp_drift_*``, ``nlp_windows_closed_total`` and ``nlp_windows_tested_total``."""

    def __init__(self, bounds: LabelBounds):
        self._bounds = bounds
        self._windows: dict[tuple[str, str, str], WindowResult] = {}
        self._closed: Counter[tuple[str, str, str]] = Counter()
        self._tested: Counter[tuple[str, str, str]] = Counter()

    def window_closed(self, result: WindowResult) -> None:
        with self._bounds.lock:
            s = (*self._bounds.stream(result.model, result.version), result.segment or "")
            self._windows[s] = result
            self._closed[s] += 1
            if result.tested:
                self._tested[s] += 1

    def forget(self, labels: tuple[str, str], segment: str | None = None) -> None:
        """Drop the series of a (model, version) stream's labels: of every segment, or of one."""
        for store in (self._windows, self._closed, self._tested):
            for key in [k for k in store if k[:2] == labels and (segment is None or k[2] == segment)]:
                del store[key]

    def latest(self) -> list[WindowResult]:
        with self._bounds.lock:
            return list(self._windows.values())

    def collect(self):
        with self._bounds.lock:
            yield from self._collect()

    def _collect(self):
        segmented = any(k[2] for k in self._windows)
        sv = ["model", "version", "segment"] if segmented else ["model", "version"]
        g = {
            name: GaugeMetricFamily(name, doc, labels=sv)
            for name, doc in (
                ("nlp_window_events", "Valid events in the latest closed window."),
                ("nlp_window_end_timestamp_seconds", "End time of the latest closed window."),
                ("nlp_window_confidence_mean", "Mean confidence in the latest closed window."),
                ("nlp_window_low_confidence_ratio", "Share of predictions below the low-confidence threshold."),
                ("nlp_window_entropy_mean", "Mean entropy (bits) of predicted probabilities."),
                ("nlp_window_error_ratio", "Share of events with an error in the latest closed window."),
                ("nlp_window_accuracy_ratio", "Accuracy on labelled events in the latest closed window."),
                ("nlp_window_drifted", "1 when any detector found drift in the latest closed window."),
            )
        }
        quantiles = GaugeMetricFamily("nlp_window_latency_seconds", "Exact latency percentiles (stat p50, p95, p99) and "
                                      "maximum (max) of the latest closed window.", labels=sv + ["stat"])
        ratios = GaugeMetricFamily("nlp_window_class_ratio", "Share of each predicted class in the latest closed window.", labels=sv + ["prediction_class"])
        drift = _DriftFamilies.create(sv)
        closed = CounterMetricFamily("nlp_windows_closed", "Windows closed.", labels=sv)
        tested = CounterMetricFamily("nlp_windows_tested", "Windows with enough events and a reference to be tested.", labels=sv)
        for (m, v, seg), r in sorted(self._windows.items()):
            lv = [m, v, seg] if segmented else [m, v]
            closed.add_metric(lv, self._closed[(m, v, seg)])
            tested.add_metric(lv, self._tested[(m, v, seg)])
            g["nlp_window_events"].add_metric(lv, r.events)
            if r.window_end_ms is not None:
                g["nlp_window_end_timestamp_seconds"].add_metric(lv, r.window_end_ms / 1000)
            conf = r.confidence
            for name, value in (
                ("nlp_window_confidence_mean", conf.mean),
                ("nlp_window_low_confidence_ratio", conf.low_ratio),
                ("nlp_window_entropy_mean", conf.entropy_mean),
                ("nlp_window_error_ratio", r.error_rate),
                ("nlp_window_accuracy_ratio", r.accuracy),
            ):
                if value is not None:
                    g[name].add_metric(lv, value)
            g["nlp_window_drifted"].add_metric(lv, 1.0 if r.drifted else 0.0)
            for key in _LATENCY_STATS:
                value = getattr(r.latency_ms, key)
                if math.isfinite(value):  # NaN without latencies: no sample
                    quantiles.add_metric(lv + [key], float(value) / 1000.0)
            total = sum(r.predictions.values())
            if total:
                folded: Counter[str] = Counter()
                for cls, n in r.predictions.items():
                    folded[self._bounds.prediction_class((m, v), cls)] += n
                for cls, n in sorted(folded.items()):
                    ratios.add_metric(lv + [cls], n / total)
            drift.add(r.drift, lv, self._bounds)
        yield from g.values()
        yield from drift.embedding.values()
        yield from (quantiles, ratios, drift.stat, drift.chi2, drift.pval, drift.flag, drift.verdict, closed, tested)


@dataclass(frozen=True)
class _DriftFamilies:
    """The drift gauges of the latest tested windows: each test's statistic, p-value and flag, each detector's
    verdict, and the embedding test's own gauges."""

    stat: GaugeMetricFamily
    chi2: GaugeMetricFamily
    pval: GaugeMetricFamily
    flag: GaugeMetricFamily
    verdict: GaugeMetricFamily
    embedding: dict[str, GaugeMetricFamily]

    @classmethod
    def create(cls, sv: list[str]) -> _DriftFamilies:
        dl = sv + ["detector", "feature"]
        # Bounded statistics (KS D, difference of shares, both in [0, 1]) and the unbounded chi-square of the
        # predicted classes are separate families, so one axis or one threshold never mixes the two.
        return cls(
            stat=GaugeMetricFamily("nlp_drift_statistic", "Drift test statistic in [0, 1] (KS D; difference of "
                                   "shares for 0/1 features) of the latest tested window.", labels=dl),
            chi2=GaugeMetricFamily("nlp_drift_chi_square_statistic", "Chi-square statistic of the predicted-class "
                                   "test of the latest tested window.", labels=dl),
            pval=GaugeMetricFamily("nlp_drift_p_value", "Drift test p-value (adjusted for input features).", labels=dl),
            flag=GaugeMetricFamily("nlp_drift_detected", "1 when the test of this feature flagged drift.", labels=dl),
            verdict=GaugeMetricFamily("nlp_drift_detector_detected", "1 when the detector flagged drift in the "
                                      "latest tested window (any of its features).", labels=sv + ["detector"]),
            embedding={
                name: GaugeMetricFamily(name, doc, labels=sv)
                for name, doc in (
                    ("nlp_embedding_mmd_statistic", "Squared MMD (RBF kernel, kernel units) of the latest tested "
                     "window's projected embeddings against the reference's."),
                    ("nlp_embedding_mmd_p_value", "Permutation p-value of the embedding MMD, adjusted with the "
                     "components' KS tests."),
                    ("nlp_embedding_drifted_components_ratio", "Share of the embedding's projected components whose "
                     "KS test flagged drift in the latest tested window."),
                )
            },
        )  # fmt: skip

    def add(self, drift: DriftVerdicts, lv: list[str], bounds: LabelBounds) -> None:
        """The samples of one window's drift verdicts, ``lv`` its stream's label values."""
        if drift.input is not None:
            self._detector(lv, "input", drift.input.drifted, drift.input.features)
        for detector, feature, d, family in (("confidence", "confidence", drift.confidence, self.stat),
                                             ("prediction", "classes", drift.prediction, self.chi2)):
            if d is not None:
                self._test(lv + [detector, feature], d.statistic, d.p_value, d.drifted, family=family)
                self.verdict.add_metric(lv + [detector], 1.0 if d.drifted else 0.0)
        d = drift.probabilities
        if d is not None:
            # BBSD: one series per class, its label bounded like ``prediction_class``; classes past the bound
            # fold into no series (a p-value cannot be summed), they still count in the detector's verdict.
            stream = (lv[0], lv[1])
            kept = [c for c in d.classes if bounds.prediction_class(stream, c.feature) != OTHER]
            self._detector(lv, "probabilities", d.drifted, kept)
        d = drift.embedding
        if d is not None:
            # The MMD and the drifted share in their own gauges, the components (pc1...) as features.
            self._detector(lv, "embedding", d.drifted, d.components)
            self.embedding["nlp_embedding_drifted_components_ratio"].add_metric(lv, d.drifted_share)
            if d.multivariate is not None:
                self.embedding["nlp_embedding_mmd_statistic"].add_metric(lv, d.multivariate.statistic)
                self.embedding["nlp_embedding_mmd_p_value"].add_metric(lv, d.multivariate.p_value_adjusted)

    def _detector(self, lv: list[str], detector: str, drifted: bool, tests) -> None:
        """A detector's verdict and, per feature it tested, the statistic, adjusted p-value and flag."""
        self.verdict.add_metric(lv + [detector], 1.0 if drifted else 0.0)
        for t in tests:
            self._test(lv + [detector, t.feature], t.statistic, t.p_value_adjusted, t.drifted)

    def _test(self, labels: list[str], statistic: float, p_value: float, drifted: bool, *,
              family: GaugeMetricFamily | None = None) -> None:
        """One test's statistic (in ``family``, ``stat`` by default), p-value and flag."""
        (family or self.stat).add_metric(labels, statistic)
        self.pval.add_metric(labels, p_value)
        self.flag.add_metric(labels, 1.0 if drifted else 0.0)
