"""Realised-accuracy gauges (latest closed labels result per stream, from LabelsResult fields) and join counters."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily

from monitor.results import LabelsResult
from sinks.prometheus.joins import JoinCollector
from sinks.prometheus.labels import LabelBounds

__all__ = ["RealisedCollector", "REALISED_GAUGES", "LABEL_JOIN_OUTCOMES"]

# Gauges of the latest closed labels result of each (model, version): name -> (help, LabelsResult field).
REALISED_GAUGES = {
    "nlp_realised_accuracy_ratio": ("Accuracy of the latest window whose label period closed, over its labelled "
                                    "predictions.", "accuracy"),
    "nlp_realised_estimated_accuracy_ratio": ("Label-free accuracy estimate of that same window (when one was "
                                              "made), to compare with nlp_realised_accuracy_ratio.",
                                              "estimated_accuracy"),
    "nlp_realised_labelled": ("Predictions of that window that met their label in time.", "labelled"),
    "nlp_realised_unmatched": ("Predictions of that window with a request_id that got no label in time.", "unmatched"),
    "nlp_realised_window_start_timestamp_seconds": ("Start of that window (epoch seconds).", "window_start_ms"),
}
LABEL_JOIN_OUTCOMES = ("matched", "duplicate", "unknown", "late", "expired", "evicted")


class RealisedCollector(JoinCollector):
    """``nlp_realised_*``, ``nlpmon_label_join_events_total`` and ``nlpmon_label_join_pending`` (absent until used)."""

    OUTCOMES = LABEL_JOIN_OUTCOMES

    def __init__(self, bounds: LabelBounds):
        super().__init__(bounds)
        self._latest: dict[tuple[str, str], LabelsResult] = {}

    def labels_closed(self, result: LabelsResult) -> None:
        with self._bounds.lock:
            self._latest[self._bounds.stream(result.model, result.version)] = result

    def _collect(self):
        if not self._latest and self._joins is None:
            return
        fam = {name: GaugeMetricFamily(name, doc, labels=["model", "version"]) for name, (doc, _) in REALISED_GAUGES.items()}
        for (model, version), r in sorted(self._latest.items()):
            for name, (_, attr) in REALISED_GAUGES.items():
                value = getattr(r, attr)
                if value is None:  # no labelled prediction, or no estimate: no sample rather than a made-up one
                    continue
                fam[name].add_metric([model, version], value / 1000.0 if attr == "window_start_ms" else float(value))
        yield from fam.values()
        yield from self._join_families(("nlpmon_label_join_events", "Label join outcomes (docs/results.md, Labels results)."),
                                       ("nlpmon_label_join_pending", "Predictions and labels waiting for their partner."))
