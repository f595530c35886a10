"""Re-evaluation metrics: the latest run's gauges per (model, version, dataset), runs by outcome, the estimate."""

from __future__ import annotations

from collections import Counter

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sinks.prometheus.labels import LabelBounds

__all__ = ["ReevalCollector", "REEVAL_GAUGES", "REEVAL_RUN_OUTCOMES"]

# The gauges of the latest re-evaluation of each (model, version, dataset): name -> help text.
REEVAL_GAUGES = {
    "nlp_reeval_accuracy_ratio": "Accuracy of the latest re-evaluation on the held-out data set.",
    "nlp_reeval_f1": "Macro-F1 of the latest re-evaluation.",
    "nlp_reeval_ece": "Expected calibration error of the latest re-evaluation.",
    "nlp_reeval_accuracy_drop": "Baseline accuracy minus the latest re-evaluation's accuracy (positive: worse).",
    "nlp_reeval_duration_seconds": "Wall-clock duration of the latest re-evaluation.",
    "nlp_reeval_last_run_timestamp_seconds": "When the latest successful re-evaluation finished.",
}
REEVAL_RUN_OUTCOMES = ("success", "failure", "timeout", "skipped_busy")


class ReevalCollector:
    """``nlp_reeval_*``, ``nlp_estimated_accuracy_ratio`` and ``nlpmon_reeval_runs_total`` (absent until used)."""

    def __init__(self, bounds: LabelBounds):
        self._bounds = bounds
        self._reeval: dict[tuple[str, str, str], dict[str, float]] = {}
        self._runs: Counter[str] | None = None  # None until re-evaluation is enabled
        self._estimated_accuracy: dict[tuple[str, str, str], float] = {}  # by (model, version, segment or "")
        self._estimate_interval: dict[tuple[str, str, str], tuple[float, float, float]] = {}  # low, high, reliable

    def set_reeval(self, model: str, version: str, dataset: str, values: dict[str, float | None]) -> None:
        unknown = set(values) - set(REEVAL_GAUGES)
        if unknown:
            raise ValueError(f"not re-evaluation gauges: {', '.join(sorted(unknown))}")
        with self._bounds.lock:
            m, v = self._bounds.stream(model, version)
            self._reeval[(m, v, dataset)] = {k: float(x) for k, x in values.items() if x is not None}

    def count_run(self, outcome: str, n: int = 1) -> None:
        if outcome not in REEVAL_RUN_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(REEVAL_RUN_OUTCOMES)}, got {outcome!r}")
        with self._bounds.lock:
            if self._runs is None:
                self._runs = Counter({o: 0 for o in REEVAL_RUN_OUTCOMES})
            self._runs[outcome] += n

    def set_estimated_accuracy(self, model: str, version: str, value: float, *, segment: str = "", interval=None) -> None:
        """``interval``: an object with ``low``, ``high`` and ``reliable`` (detectors.accuracy_estimate), or None."""
        with self._bounds.lock:
            key = (*self._bounds.stream(model, version), segment)
            self._estimated_accuracy[key] = float(value)
            if interval is None:
                self._estimate_interval.pop(key, None)
            else:
                self._estimate_interval[key] = (float(interval.low), float(interval.high), float(bool(interval.reliable)))

    def forget(self, labels: tuple[str, str], segment: str | None = None) -> None:
        """Drop a (model, version)'s series: all of them, or only one segment's estimate."""
        for key in [k for k in self._estimated_accuracy if k[:2] == labels and segment in (None, k[2])]:
            del self._estimated_accuracy[key]
            self._estimate_interval.pop(key, None)
        if segment is None:
            for key in [k for k in self._reeval if tuple(k[:2]) == labels]:
                del self._reeval[key]

    def collect(self):
        with self._bounds.lock:
            yield from self._collect()

    def _collect(self):
        if not (self._reeval or self._estimated_accuracy or self._runs is not None):
            return
        labels = ["model", "version", "dataset"]
        families = {name: GaugeMetricFamily(name, doc, labels=labels) for name, doc in REEVAL_GAUGES.items()}
        for key, values in sorted(self._reeval.items()):
            for name, value in values.items():
                families[name].add_metric(list(key), value)
        yield from families.values()
        # A segment label once a window with a segment has an estimate (window.by_segment), as for the window
        # series: the segment-less stream's "" is no label to Prometheus, so its series stays what it was.
        segmented = any(k[2] for k in self._estimated_accuracy)
        est = GaugeMetricFamily("nlp_estimated_accuracy_ratio", "Label-free accuracy estimate of the latest closed window "
                                "(its confidences through the latest re-evaluation's calibration table).",
                                labels=["model", "version", "segment"] if segmented else ["model", "version"])  # fmt: skip
        for (m, v, seg), value in sorted(self._estimated_accuracy.items()):
            est.add_metric([m, v, seg] if segmented else [m, v], value)
        yield est
        if self._estimate_interval:
            yield from self._interval_families(segmented)

        if self._runs is not None:
            runs = CounterMetricFamily("nlpmon_reeval_runs", "Re-evaluation runs by outcome (skipped_busy: a trigger "
                                       "that found a run in progress).", labels=["outcome"])  # fmt: skip
            for outcome in REEVAL_RUN_OUTCOMES:
                runs.add_metric([outcome], self._runs[outcome])
            yield runs

    def _interval_families(self, segmented: bool):
        names = [("nlp_estimated_accuracy_low_ratio", "Lower end of the 95% interval of that estimate."),
                 ("nlp_estimated_accuracy_high_ratio", "Upper end of the 95% interval of that estimate."),
                 ("nlp_estimated_accuracy_reliable", "1 when that estimate can be trusted; 0 when the window's "
                  "input or embedding drift was flagged and few realised labels support the calibration.")]
        labels = ["model", "version", "segment"] if segmented else ["model", "version"]
        families = [GaugeMetricFamily(name, doc, labels=labels) for name, doc in names]
        for (m, v, seg), values in sorted(self._estimate_interval.items()):
            for family, value in zip(families, values):
                family.add_metric([m, v, seg] if segmented else [m, v], value)
        yield from families
