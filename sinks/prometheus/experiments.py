"""A/B experiment gauges: each experiment's latest closed window, read from its ExperimentResult's fields."""

from __future__ import annotations

import math
from collections import Counter

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from monitor.results import ExperimentResult
from sinks.prometheus.labels import LabelBounds

__all__ = ["ExperimentsCollector"]


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


class ExperimentsCollector:
    """``nlp_experiment_*`` (absent until an experiment closed a window)."""

    def __init__(self, bounds: LabelBounds):
        self._bounds = bounds
        self._latest: dict[str, ExperimentResult] = {}  # experiment label -> latest result
        self._windows: Counter[str] = Counter()

    def experiment_closed(self, result: ExperimentResult) -> None:
        with self._bounds.lock:
            name = self._bounds.bounded(self._latest, result.experiment, "experiment")
            self._latest[name] = result
            self._windows[name] += 1

    def collect(self):
        with self._bounds.lock:
            yield from self._collect()

    def _collect(self):
        if not self._latest:
            return
        el, vl = ["experiment", "model"], ["experiment", "model", "variant"]
        fam = {name: GaugeMetricFamily(name, doc, labels=labels) for name, doc, labels in (
            ("nlp_experiment_samples", "Events assigned to each variant since the experiment started.", vl),
            ("nlp_experiment_intended_share", "Intended traffic share of each variant.", vl),
            ("nlp_experiment_metric_mean", "Primary metric of each variant since the experiment started.", vl),
            ("nlp_experiment_metric_samples", "Observations of the primary metric per variant (e.g. labelled events).", vl),
            ("nlp_experiment_lift", "Treatment minus control on the primary metric.", vl),
            ("nlp_experiment_lift_ci_low", "Lower bound of the always-valid confidence sequence of the lift.", vl),
            ("nlp_experiment_lift_ci_high", "Upper bound of the always-valid confidence sequence of the lift.", vl),
            ("nlp_experiment_p_value", "Always-valid p-value of the lift (may be read at every window).", vl),
            ("nlp_experiment_significant", "1 when the always-valid test rejected 'no difference'.", vl),
            ("nlp_experiment_degraded", "1 when the treatment is significantly worse on the primary metric.", vl),
            ("nlp_experiment_srm_p_value", "Sample-ratio mismatch chi-square p-value (assignment vs intended shares).", el),
            ("nlp_experiment_srm_mismatch", "1 when the split does not match the intended shares: every figure is suspect.", el),
            ("nlp_experiment_planned_samples", "Planned samples per variant of the fixed-horizon test.", el),
            ("nlp_experiment_window_end_timestamp_seconds", "End of the experiment's latest closed window.", el),
        )}  # fmt: skip
        guard = GaugeMetricFamily("nlp_experiment_guardrail_breached", "1 when a guardrail of the treatment is worse "
                                  "than tolerated (0: within, or not evaluated yet).", labels=vl + ["guardrail"])
        delta = GaugeMetricFamily("nlp_experiment_guardrail_delta", "Treatment minus control on a guardrail metric.",
                                  labels=vl + ["guardrail"])
        windows = CounterMetricFamily("nlp_experiment_windows", "Experiment windows closed (looks).", labels=el)
        for name, r in sorted(self._latest.items()):
            m = r.model
            windows.add_metric([name, m], self._windows[name])
            for key, value in (("nlp_experiment_srm_p_value", _finite(r.srm.p_value)),
                               ("nlp_experiment_srm_mismatch", 1.0 if r.srm_mismatch else 0.0),
                               ("nlp_experiment_planned_samples", r.planned_samples),
                               ("nlp_experiment_window_end_timestamp_seconds", r.window_end_ms / 1000)):
                if value is not None:
                    fam[key].add_metric([name, m], value)
            for v in r.variants:
                lv = [name, m, v.variant]
                fam["nlp_experiment_samples"].add_metric(lv, v.samples)
                fam["nlp_experiment_intended_share"].add_metric(lv, float(v.intended_share))
                fam["nlp_experiment_metric_samples"].add_metric(lv, v.metric_n)
                if _finite(v.metric_mean) is not None:
                    fam["nlp_experiment_metric_mean"].add_metric(lv, float(v.metric_mean))
            for c in r.comparisons:
                lv, av = [name, m, c.variant], c.always_valid
                for key, value in (("nlp_experiment_lift", _finite(av.lift)), ("nlp_experiment_lift_ci_low", _finite(av.ci_low)),
                                   ("nlp_experiment_lift_ci_high", _finite(av.ci_high)),
                                   ("nlp_experiment_p_value", _finite(av.p_value)),
                                   ("nlp_experiment_significant", 1.0 if av.significant else 0.0),
                                   ("nlp_experiment_degraded", 1.0 if c.degraded else 0.0)):
                    if value is not None:  # an unbounded interval (too few samples yet) is left out
                        fam[key].add_metric(lv, value)
                for g in c.guardrails:
                    guard.add_metric(lv + [g.name], 1.0 if g.breached else 0.0)
                    if _finite(g.delta) is not None:
                        delta.add_metric(lv + [g.name], float(g.delta))
        yield from fam.values()
        yield from (guard, delta, windows)
