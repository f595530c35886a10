"""Prometheus exposition of nlpmon's state (metric names and labels: docs/metrics.md).

One custom collector registered on an explicit ``CollectorRegistry`` yields metric families from current
state at scrape time (prometheus client_python's "custom collector" pattern). Updates arrive per *batch*:
histogram buckets are counted with numpy, which is what lets the pipeline export per-event histograms at
100k+ events/s where one ``Histogram.observe`` call per event and metric would cost more than the rest of the
pipeline. This module counts and formats; it computes no statistics.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

__all__ = ["PrometheusSink", "OTHER", "LATENCY_BUCKETS_SECONDS", "CONFIDENCE_BUCKETS", "LENGTH_BUCKETS_TOKENS",
           "REEVAL_GAUGES", "REEVAL_RUN_OUTCOMES", "SHADOW_GAUGES", "SHADOW_JOIN_OUTCOMES"]

OTHER = "__other__"
LATENCY_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
LENGTH_BUCKETS_TOKENS = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_QUANTILES = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"), ("1", "max"))
# The gauges of the latest re-evaluation of each (model, version, dataset): name -> help text.
REEVAL_GAUGES = {
    "nlp_reeval_accuracy": "Accuracy of the latest re-evaluation on the held-out data set.",
    "nlp_reeval_f1": "Macro-F1 of the latest re-evaluation.",
    "nlp_reeval_ece": "Expected calibration error of the latest re-evaluation.",
    "nlp_reeval_accuracy_drop": "Baseline accuracy minus the latest re-evaluation's accuracy (positive: worse).",
    "nlp_reeval_duration_seconds": "Wall-clock duration of the latest re-evaluation.",
    "nlp_reeval_last_run_timestamp_seconds": "When the latest successful re-evaluation finished.",
}
REEVAL_RUN_OUTCOMES = ("success", "failure", "timeout", "skipped_busy")
# Shadow-join gauges of the latest closed window of each served model: name -> (help, key of the result).
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
        out = [(_fmt(b), int(c)) for b, c in zip(self.bounds, cumulative[:-1])]
        out.append(("+Inf", int(cumulative[-1])))
        return out


def _fmt(x: float) -> str:
    return repr(float(x))


class PrometheusSink:
    """Holds every exported value; register it once on an explicit registry."""

    def __init__(self, registry: CollectorRegistry, *, max_streams: int = 20, max_classes: int = 50, build_version: str = ""):
        self._lock = threading.Lock()
        self._max_streams = max_streams
        self._max_classes = max_classes
        self._build_version = build_version
        self._streams: dict[tuple[str, str], tuple[str, str]] = {}
        self._classes: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._folded: Counter[str] = Counter()
        self._predictions: Counter[tuple[str, str, str]] = Counter()
        self._errors: Counter[tuple[str, str]] = Counter()
        self._latency: dict[tuple[str, str], _Histogram] = {}
        self._confidence: dict[tuple[str, str], _Histogram] = {}
        self._lengths: dict[tuple[str, str], _Histogram] = {}
        self._last_event: dict[tuple[str, str], float] = {}
        self._windows: dict[tuple[str, str], dict] = {}
        self._windows_closed: Counter[tuple[str, str]] = Counter()
        self._windows_tested: Counter[tuple[str, str]] = Counter()
        self._consumed = 0
        self._valid = 0
        self._invalid: Counter[str] = Counter()
        self._late: Counter[tuple[str, str]] = Counter()
        self._dead_letter = 0
        self._open_windows = 0
        self._gauges: dict[str, tuple[str, tuple[str, ...], dict[tuple[str, ...], float]]] = {}
        self._reeval: dict[tuple[str, str, str], dict[str, float]] = {}
        self._reeval_runs: Counter[str] | None = None  # None until re-evaluation is enabled
        self._estimated_accuracy: dict[tuple[str, str], float] = {}
        self._experiments: dict[str, dict] = {}  # experiment label -> latest result
        self._experiment_windows: Counter[str] = Counter()
        self._shadow: dict[str, dict] = {}  # served model label -> latest shadow result
        self._shadow_joins: Counter[str] | None = None  # None until shadow mode reports
        self._shadow_pending = 0
        registry.register(self)

    # -- label bounds --------------------------------------------------------------------------------------
    def _stream(self, model: str, version: str) -> tuple[str, str]:
        key = (model, version)
        labels = self._streams.get(key)
        if labels is None:
            if len(self._streams) < self._max_streams:
                labels = key
            else:
                labels = (OTHER, OTHER)
                self._folded["stream"] += 1
            self._streams[key] = labels
        return labels

    def _class(self, stream: tuple[str, str], cls: str) -> str:
        known = self._classes[stream]
        if cls in known:
            return cls
        if len(known) < self._max_classes:
            known.add(cls)
            return cls
        self._folded["prediction_class"] += 1
        return OTHER

    # -- updates (called by the pipeline / daemon) ---------------------------------------------------------
    def preset_reasons(self, reasons) -> None:
        """Create a zero series per rejection reason, so dashboards show 0 instead of "no data"."""
        with self._lock:
            for r in reasons:
                self._invalid[r] += 0

    def observe_batch(self, model, version, *, classes, errors, latency_ms, confidence, lengths, last_ts_ms) -> None:
        with self._lock:
            s = self._stream(model, version)
            for cls, n in classes.items():
                if cls is not None:
                    self._predictions[(s[0], s[1], self._class(s, cls))] += n
            if errors:
                self._errors[s] += errors
            self._hist(self._latency, s, LATENCY_BUCKETS_SECONDS).add(latency_ms / 1000.0)
            self._hist(self._confidence, s, CONFIDENCE_BUCKETS).add(confidence)
            self._hist(self._lengths, s, LENGTH_BUCKETS_TOKENS).add(lengths)
            ts = last_ts_ms / 1000.0
            if ts > self._last_event.get(s, 0.0):
                self._last_event[s] = ts

    @staticmethod
    def _hist(store: dict, key, bounds) -> _Histogram:
        h = store.get(key)
        if h is None:
            h = store[key] = _Histogram(bounds)
        return h

    def window_closed(self, result: dict) -> None:
        with self._lock:
            s = self._stream(result["model"], result["version"])
            self._windows[s] = result
            self._windows_closed[s] += 1
            if result.get("tested"):
                self._windows_tested[s] += 1

    def count_records(self, consumed: int, valid: int) -> None:
        with self._lock:
            self._consumed += consumed
            self._valid += valid

    def count_invalid(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._invalid[reason] += n

    def count_late(self, model: str, version: str, n: int) -> None:
        with self._lock:
            self._late[self._stream(model, version)] += n

    def count_dead_letter(self, n: int = 1) -> None:
        with self._lock:
            self._dead_letter += n

    def set_open_windows(self, n: int) -> None:
        self._open_windows = n

    def set_gauge(self, name: str, doc: str, value: float, **labels: str) -> None:
        """Set a daemon-state gauge (e.g. ``nlpmon_kafka_connected``) exported alongside the rest."""
        with self._lock:
            entry = self._gauges.get(name)
            if entry is None:
                entry = self._gauges[name] = (doc, tuple(sorted(labels)), {})
            entry[2][tuple(labels[k] for k in entry[1])] = float(value)

    def set_reeval(self, model: str, version: str, dataset: str, values: dict[str, float | None]) -> None:
        """Replace the ``nlp_reeval_*`` gauges of (model, version, dataset); keys of ``values`` are
        :data:`REEVAL_GAUGES` names, a ``None`` value leaves that gauge out."""
        unknown = set(values) - set(REEVAL_GAUGES)
        if unknown:
            raise ValueError(f"not re-evaluation gauges: {', '.join(sorted(unknown))}")
        with self._lock:
            m, v = self._stream(model, version)
            self._reeval[(m, v, dataset)] = {k: float(x) for k, x in values.items() if x is not None}

    def count_reeval_run(self, outcome: str, n: int = 1) -> None:
        """Count a re-evaluation run by outcome; the first call (any ``n``, 0 included) creates every series."""
        if outcome not in REEVAL_RUN_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(REEVAL_RUN_OUTCOMES)}, got {outcome!r}")
        with self._lock:
            if self._reeval_runs is None:
                self._reeval_runs = Counter({o: 0 for o in REEVAL_RUN_OUTCOMES})
            self._reeval_runs[outcome] += n

    def set_estimated_accuracy(self, model: str, version: str, value: float) -> None:
        """Set the label-free accuracy estimate of a stream's latest closed window."""
        with self._lock:
            self._estimated_accuracy[self._stream(model, version)] = float(value)

    def experiment_closed(self, result: dict) -> None:
        """Keep an experiment's latest result (ExperimentResult.to_dict()) for its nlp_experiment_* gauges."""
        with self._lock:
            name = self._bounded(self._experiments, result["experiment"], "experiment")
            self._experiments[name] = result
            self._experiment_windows[name] += 1

    def shadow_closed(self, result: dict) -> None:
        """Keep a served model's latest shadow-join result (ShadowResult.to_dict()) for the nlp_shadow_* gauges."""
        with self._lock:
            self._shadow[self._bounded(self._shadow, result["model"], "stream")] = result

    def count_shadow_joins(self, deltas: dict[str, int]) -> None:
        """Add to ``nlpmon_shadow_events_total`` by outcome; the first call creates every series."""
        with self._lock:
            if self._shadow_joins is None:
                self._shadow_joins = Counter({o: 0 for o in SHADOW_JOIN_OUTCOMES})
            for outcome, n in deltas.items():
                if outcome in SHADOW_JOIN_OUTCOMES and n > 0:
                    self._shadow_joins[outcome] += n

    def set_shadow_pending(self, n: int) -> None:
        self._shadow_pending = n

    def _bounded(self, known: dict, name: str, label: str) -> str:
        if name in known or len(known) < self._max_streams:
            return name
        self._folded[label] += 1
        return OTHER

    def latest_windows(self) -> list[dict]:
        with self._lock:
            return list(self._windows.values())

    # -- exposition ----------------------------------------------------------------------------------------
    def collect(self):
        with self._lock:
            yield from self._collect_events()
            yield from self._collect_windows()
            yield from self._collect_reeval()
            yield from self._collect_experiments()
            yield from self._collect_shadow()
            yield from self._collect_daemon()

    def _collect_events(self):
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

    def _collect_windows(self):
        sv = ["model", "version"]
        g = {
            name: GaugeMetricFamily(name, doc, labels=sv)
            for name, doc in (
                ("nlp_window_events", "Valid events in the latest closed window."),
                ("nlp_window_end_timestamp_seconds", "End time of the latest closed window."),
                ("nlp_window_confidence_mean", "Mean confidence in the latest closed window."),
                ("nlp_window_low_confidence_ratio", "Share of predictions below the low-confidence threshold."),
                ("nlp_window_entropy_mean", "Mean entropy (bits) of predicted probabilities."),
                ("nlp_window_error_ratio", "Share of events with an error in the latest closed window."),
                ("nlp_window_accuracy", "Accuracy on labelled events in the latest closed window."),
                ("nlp_window_drifted", "1 when any detector found drift in the latest closed window."),
            )
        }
        quantiles = GaugeMetricFamily("nlp_window_latency_seconds", "Latency quantiles of the latest closed window.", labels=sv + ["quantile"])
        ratios = GaugeMetricFamily("nlp_window_class_ratio", "Share of each predicted class in the latest closed window.", labels=sv + ["prediction_class"])
        dl = sv + ["detector", "feature"]
        stat = GaugeMetricFamily("nlp_drift_statistic", "Drift test statistic of the latest tested window.", labels=dl)
        pval = GaugeMetricFamily("nlp_drift_p_value", "Drift test p-value (adjusted for input features).", labels=dl)
        flag = GaugeMetricFamily("nlp_drift_detected", "1 when the drift test flagged drift.", labels=dl)
        closed = CounterMetricFamily("nlp_windows_closed", "Windows closed.", labels=sv)
        tested = CounterMetricFamily("nlp_windows_tested", "Windows with enough events and a reference to be tested.", labels=sv)
        for (m, v), r in sorted(self._windows.items()):
            lv = [m, v]
            closed.add_metric(lv, self._windows_closed[(m, v)])
            tested.add_metric(lv, self._windows_tested[(m, v)])
            g["nlp_window_events"].add_metric(lv, r["events"])
            if r["window_end"]:
                g["nlp_window_end_timestamp_seconds"].add_metric(lv, _epoch(r["window_end"]))
            conf = r["confidence"]
            for name, value in (
                ("nlp_window_confidence_mean", conf["mean"]),
                ("nlp_window_low_confidence_ratio", conf["low_ratio"]),
                ("nlp_window_entropy_mean", conf["entropy_mean"]),
                ("nlp_window_error_ratio", r["error_rate"]),
                ("nlp_window_accuracy", r["accuracy"]),
            ):
                if value is not None:
                    g[name].add_metric(lv, value)
            g["nlp_window_drifted"].add_metric(lv, 1.0 if r["drifted"] else 0.0)
            lat = r["latency_ms"]
            for q, key in _QUANTILES:
                if lat.get(key) is not None:
                    quantiles.add_metric(lv + [q], lat[key] / 1000.0)
            total = sum(r["predictions"].values())
            if total:
                folded: Counter[str] = Counter()
                for cls, n in r["predictions"].items():
                    folded[self._class((m, v), cls)] += n
                for cls, n in sorted(folded.items()):
                    ratios.add_metric(lv + [cls], n / total)
            self._drift_samples(r["drift"], lv, stat, pval, flag)
        yield from g.values()
        yield from (quantiles, ratios, stat, pval, flag, closed, tested)

    @staticmethod
    def _drift_samples(drift: dict, lv: list[str], stat, pval, flag) -> None:
        d = drift.get("input")
        if d:
            flag.add_metric(lv + ["input", "__any__"], 1.0 if d["drifted"] else 0.0)
            for feature, f in d["features"].items():
                stat.add_metric(lv + ["input", feature], f["statistic"])
                pval.add_metric(lv + ["input", feature], f["p_value_adjusted"])
                flag.add_metric(lv + ["input", feature], 1.0 if f["drifted"] else 0.0)
        for detector, feature in (("confidence", "confidence"), ("prediction", "classes")):
            d = drift.get(detector)
            if d:
                stat.add_metric(lv + [detector, feature], d["statistic"])
                pval.add_metric(lv + [detector, feature], d["p_value"])
                flag.add_metric(lv + [detector, feature], 1.0 if d["drifted"] else 0.0)
                flag.add_metric(lv + [detector, "__any__"], 1.0 if d["drifted"] else 0.0)

    def _collect_reeval(self):
        if not (self._reeval or self._estimated_accuracy or self._reeval_runs is not None):
            return
        labels = ["model", "version", "dataset"]
        families = {name: GaugeMetricFamily(name, doc, labels=labels) for name, doc in REEVAL_GAUGES.items()}
        for key, values in sorted(self._reeval.items()):
            for name, value in values.items():
                families[name].add_metric(list(key), value)
        yield from families.values()
        est = GaugeMetricFamily("nlp_estimated_accuracy", "Label-free accuracy estimate of the latest closed window "
                                "(its confidences through the latest re-evaluation's calibration table).",
                                labels=["model", "version"])  # fmt: skip
        for (m, v), value in sorted(self._estimated_accuracy.items()):
            est.add_metric([m, v], value)
        yield est
        if self._reeval_runs is not None:
            runs = CounterMetricFamily("nlpmon_reeval_runs", "Re-evaluation runs by outcome (skipped_busy: a trigger "
                                       "that found a run in progress).", labels=["outcome"])  # fmt: skip
            for outcome in REEVAL_RUN_OUTCOMES:
                runs.add_metric([outcome], self._reeval_runs[outcome])
            yield runs

    def _collect_experiments(self):
        if not self._experiments:
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
        for name, r in sorted(self._experiments.items()):
            m = r["model"]
            windows.add_metric([name, m], self._experiment_windows[name])
            srm = r["srm"]
            for key, value in (("nlp_experiment_srm_p_value", srm["p_value"]),
                               ("nlp_experiment_srm_mismatch", 1.0 if r["srm_mismatch"] else 0.0),
                               ("nlp_experiment_planned_samples", r["planned_samples"]),
                               ("nlp_experiment_window_end_timestamp_seconds", _epoch(r["window_end"]))):
                if value is not None:
                    fam[key].add_metric([name, m], value)
            for variant, v in r["variants"].items():
                lv = [name, m, variant]
                fam["nlp_experiment_samples"].add_metric(lv, v["samples"])
                fam["nlp_experiment_intended_share"].add_metric(lv, v["intended_share"])
                fam["nlp_experiment_metric_samples"].add_metric(lv, v["metric_n"])
                if v["metric_mean"] is not None:
                    fam["nlp_experiment_metric_mean"].add_metric(lv, v["metric_mean"])
            for variant, c in r["comparisons"].items():
                lv, av = [name, m, variant], c["always_valid"]
                for key, value in (("nlp_experiment_lift", av["lift"]), ("nlp_experiment_lift_ci_low", av["ci_low"]),
                                   ("nlp_experiment_lift_ci_high", av["ci_high"]),
                                   ("nlp_experiment_p_value", av["p_value"]),
                                   ("nlp_experiment_significant", 1.0 if av["significant"] else 0.0),
                                   ("nlp_experiment_degraded", 1.0 if c["degraded"] else 0.0)):
                    if value is not None:  # an unbounded interval (too few samples yet) is left out
                        fam[key].add_metric(lv, value)
                for g in c["guardrails"]:
                    guard.add_metric(lv + [g["name"]], 1.0 if g["breached"] else 0.0)
                    if g["delta"] is not None:
                        delta.add_metric(lv + [g["name"]], g["delta"])
        yield from fam.values()
        yield from (guard, delta, windows)

    def _collect_shadow(self):
        if not self._shadow and self._shadow_joins is None:
            return
        fam = {name: GaugeMetricFamily(name, doc, labels=["model"]) for name, (doc, _) in SHADOW_GAUGES.items()}
        lat = GaugeMetricFamily("nlp_shadow_latency_diff_p95_seconds", "Shadow p95 latency minus served p95 latency "
                                "over the pairs of the latest closed window.", labels=["model"])  # fmt: skip
        for model, r in sorted(self._shadow.items()):
            for name, (_, key) in SHADOW_GAUGES.items():
                value = r.get(key)
                if value is not None:
                    fam[name].add_metric([model], float(value))
            if r.get("latency_diff_p95_ms") is not None:
                lat.add_metric([model], r["latency_diff_p95_ms"] / 1000.0)
        yield from fam.values()
        yield lat
        if self._shadow_joins is not None:
            c = CounterMetricFamily("nlpmon_shadow_events", "Events through the shadow joiner, by outcome.",
                                    labels=["outcome"])
            for outcome in SHADOW_JOIN_OUTCOMES:
                c.add_metric([outcome], self._shadow_joins[outcome])
            yield c
            g = GaugeMetricFamily("nlpmon_shadow_pending", "Events waiting for their served/shadow partner.")
            g.add_metric([], self._shadow_pending)
            yield g

    def _collect_daemon(self):
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
        c = CounterMetricFamily("nlpmon_dead_letter", "Records written to the dead-letter destination.")
        c.add_metric([], self._dead_letter)
        yield c
        c = CounterMetricFamily("nlpmon_label_values_folded", "Label values folded into __other__.", labels=["label"])
        for label in ("stream", "prediction_class", "experiment"):
            c.add_metric([label], self._folded[label])
        yield c
        g = GaugeMetricFamily("nlpmon_open_windows", "Windows currently open.")
        g.add_metric([], self._open_windows)
        yield g
        g = GaugeMetricFamily("nlpmon_up", "1 while the nlpmon process runs.")
        g.add_metric([], 1.0)
        yield g
        g = GaugeMetricFamily("nlpmon_build_info", "nlpmon build information.", labels=["version"])
        g.add_metric([self._build_version], 1.0)
        yield g
        for name, (doc, keys, values) in sorted(self._gauges.items()):
            g = GaugeMetricFamily(name, doc, labels=list(keys))
            for lv, value in sorted(values.items()):
                g.add_metric(list(lv), value)
            yield g


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
