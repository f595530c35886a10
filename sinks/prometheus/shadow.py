"""Shadow-mode gauges (latest closed window per served model, from ShadowResult fields) and joiner counters."""

from __future__ import annotations

import math

from prometheus_client.core import GaugeMetricFamily

from monitor.results import ShadowResult
from sinks.prometheus.joins import JoinCollector
from sinks.prometheus.labels import LabelBounds

__all__ = ["ShadowCollector", "SHADOW_GAUGES", "SHADOW_JOIN_OUTCOMES"]

# Shadow-join gauges of the latest closed window of each served model: name -> (help, field of the summary).
SHADOW_GAUGES = {
    "nlp_shadow_pairs": ("Served/shadow pairs joined in the latest closed window.", "n"),
    "nlp_shadow_agreement_ratio": ("Share of pairs where served and shadow predicted the same class.", "agreement_rate"),
    "nlp_shadow_agreement_low": ("1 when the agreement is below shadow.min_agreement.", "agreement_low"),
    "nlp_shadow_confidence_diff_mean": ("Mean of shadow minus served confidence over the pairs.", "confidence_diff_mean"),
    "nlp_shadow_confidence_ks_statistic": ("KS statistic between served and shadow confidences.", "ks_statistic"),
    "nlp_shadow_confidence_ks_p_value": ("KS p-value between served and shadow confidences.", "ks_p_value"),
}
SHADOW_JOIN_OUTCOMES = ("joined", "unmatched_served", "unmatched_shadow", "duplicates", "evicted_overflow",
                        "no_request_id")


class ShadowCollector(JoinCollector):
    """``nlp_shadow_*``, ``nlpmon_shadow_events_total`` and ``nlpmon_shadow_pending`` (absent until used)."""

    OUTCOMES = SHADOW_JOIN_OUTCOMES

    def __init__(self, bounds: LabelBounds):
        super().__init__(bounds)
        self._latest: dict[str, ShadowResult] = {}  # served model label -> latest shadow result

    def shadow_closed(self, result: ShadowResult) -> None:
        with self._bounds.lock:
            self._latest[self._bounds.bounded(self._latest, result.model, "stream")] = result

    def _collect(self):
        if not self._latest and self._joins is None:
            return
        fam = {name: GaugeMetricFamily(name, doc, labels=["model"]) for name, (doc, _) in SHADOW_GAUGES.items()}
        lat = GaugeMetricFamily("nlp_shadow_latency_diff_p95_seconds", "Shadow p95 latency minus served p95 latency "
                                "over the pairs of the latest closed window.", labels=["model"])  # fmt: skip
        for model, r in sorted(self._latest.items()):
            s = r.summary
            for name, (_, attr) in SHADOW_GAUGES.items():
                value = float(getattr(s, attr))
                if math.isfinite(value):  # undefined (no comparable pairs): no sample
                    fam[name].add_metric([model], value)
            if math.isfinite(s.latency_diff_p95_ms):
                lat.add_metric([model], s.latency_diff_p95_ms / 1000.0)
        yield from fam.values()
        yield lat
        yield from self._join_families(("nlpmon_shadow_events", "Events through the shadow joiner, by outcome."),
                                       ("nlpmon_shadow_pending", "Events waiting for their served/shadow partner."))
