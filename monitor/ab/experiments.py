"""A/B experiments in the pipeline: per experiment and window, SRM, always-valid lift, fixed-horizon figures, guardrails.

The pipeline hands every valid event to :class:`ExperimentSet`, which gives each event of a configured
experiment's model to that experiment's :class:`ExperimentTracker`. A tracker cuts the experiment's events into
windows with the pipeline's window arithmetic (same size, lateness and watermark rule as ``monitor.windowing.windows``,
over the experiment's own events), and when a window closes it is one *look*: its per-variant figures are
added to the cumulative ones since the experiment started and :class:`ExperimentResult` reports

* assignment counts per variant and the sample-ratio mismatch test on them (``detectors.ab``);
* the primary metric per variant and, per treatment against the control, the always-valid p-value and
  confidence sequence of the lift (``detectors.sequential``), which may be read at every window;
* the fixed-horizon z-test or Welch t-test with the planned sample size, valid only once it is reached;
* guardrails: error rate and low-confidence ratio with an always-valid interval of their difference,
  p99 latency per window.

Every figure is a function of the event sequence alone: events are added one at a time in arrival order
(float sums then do not depend on how a source batched them), latencies go through the batch-independent
reservoir, and the whole state round-trips through :meth:`ExperimentSet.state`, so a daemon restarted from
a checkpoint reports exactly what an uninterrupted one would (docs/experiments.md).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import astuple

import numpy as np

from detectors.ab import (
    FixedHorizonResult,
    GuardrailResult,
    evaluate_guardrail,
    required_sample_size,
    sample_ratio_mismatch,
    two_proportion_z_test,
    welch_t_test,
)  # fmt: skip
from detectors.latency import percentile_or_nan
from detectors.sequential import ArmStats, SequentialTest, welford_update
from monitor.config import Config, ExperimentConfig, GuardrailConfig, WindowConfig
from monitor.ingest.events import Event
from monitor.logs import log_event
from monitor.results import RESULT_SCHEMA, Comparison, ExperimentResult, VariantFigures
from monitor.windowing.accumulator import window_seed
from monitor.windowing.reservoir import Reservoir
from monitor.windowing.windows import closed_by_ms, is_late, window_start_ms

__all__ = ["ExperimentSet", "ExperimentTracker", "ExperimentResult", "VariantFigures", "Comparison",
           "PROPORTION_METRICS", "HIGHER_IS_BETTER", "RESULT_SCHEMA"]

PROPORTION_METRICS = ("accuracy", "misclassification_rate", "error_rate")
# Which way of the primary metric is better; "degraded" is a significant lift the other way.
HIGHER_IS_BETTER = {"accuracy": True, "misclassification_rate": False, "error_rate": False, "outcome": True,
                    "confidence": True}
OTHER = "__other__"
_MAX_UNEXPECTED = 20  # distinct unexpected variant names kept by name; more fold into __other__
_LATENCY_SAMPLE = 2_000  # latencies kept per variant and window for the p99 guardrail
_LATENCY_FLUSH = 256  # latencies buffered before they go through the reservoir (its sample ignores batching)


# -- per-window accumulation ----------------------------------------------------------------------------------
class _Arm:
    """One variant's events in one open window; every update is one event, in arrival order."""

    __slots__ = ("n", "metric_n", "mean", "m2", "successes", "errors", "conf_n", "low_n", "lat_buffer", "lat")

    def __init__(self, seed: int):
        self.n = self.metric_n = self.successes = self.errors = self.conf_n = self.low_n = 0
        self.mean = self.m2 = 0.0
        self.lat_buffer: list[float] = []
        self.lat = Reservoir(_LATENCY_SAMPLE, 1, seed)

    def observe(self, x: float) -> None:
        # One value at a time: the same floats whatever the batching of the source.
        self.metric_n, self.mean, self.m2 = welford_update(self.metric_n, self.mean, self.m2, x)

    def latency(self, ms: float) -> None:
        self.lat_buffer.append(ms)
        if len(self.lat_buffer) >= _LATENCY_FLUSH:
            self._flush_latency()

    def _flush_latency(self) -> None:
        if self.lat_buffer:
            self.lat.add(np.asarray(self.lat_buffer, dtype=np.float64).reshape(-1, 1))
            self.lat_buffer = []

    def latency_p99(self, min_samples: int) -> float:
        self._flush_latency()
        return percentile_or_nan(self.lat.rows[:, 0], 99.0, min_samples=min_samples)

    def metric_stats(self, proportion: bool) -> ArmStats:
        if proportion:
            return ArmStats.from_successes(self.metric_n, self.successes)
        return ArmStats(self.metric_n, self.mean, max(self.m2, 0.0)) if self.metric_n else ArmStats()

    def state(self) -> list:
        return [self.n, self.metric_n, self.mean, self.m2, self.successes, self.errors, self.conf_n, self.low_n,
                list(self.lat_buffer), self.lat.state()]

    @classmethod
    def from_state(cls, s: list) -> _Arm:
        arm = cls.__new__(cls)
        (arm.n, arm.metric_n, arm.mean, arm.m2, arm.successes, arm.errors, arm.conf_n, arm.low_n) = s[:8]
        arm.lat_buffer = list(s[8])
        arm.lat = Reservoir.from_state(s[9])
        return arm


class _Window:
    __slots__ = ("key", "start_ms", "end_ms", "arms", "unexpected", "events")

    def __init__(self, key: int, start_ms: int, end_ms: int):
        self.key, self.start_ms, self.end_ms = key, start_ms, end_ms
        self.arms: dict[str, _Arm] = {}
        self.unexpected: dict[str, int] = {}
        self.events = 0

    def state(self) -> dict:
        return {"key": self.key, "start_ms": self.start_ms, "end_ms": self.end_ms, "events": self.events,
                "arms": {v: a.state() for v, a in self.arms.items()}, "unexpected": dict(self.unexpected)}

    @classmethod
    def from_state(cls, s: dict) -> _Window:
        w = cls(s["key"], s["start_ms"], s["end_ms"])
        w.events = s["events"]
        w.arms = {v: _Arm.from_state(a) for v, a in s["arms"].items()}
        w.unexpected = dict(s["unexpected"])
        return w


def _fingerprint(cfg: ExperimentConfig, window: WindowConfig, low_confidence_threshold: float) -> str:
    """Changes whenever a setting that shapes the figures changes: a restored state is then not reused."""
    text = repr((astuple(cfg), window.kind, window.size_seconds, window.events, window.lateness_seconds,
                 window.seed, low_confidence_threshold))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- one experiment -------------------------------------------------------------------------------------------
class ExperimentTracker:
    """Windows and cumulative statistics of one ``[[experiments]]`` entry; feed it with :meth:`add`."""

    def __init__(self, cfg: ExperimentConfig, window: WindowConfig, *, low_confidence_threshold: float = 0.5):
        self.cfg = cfg
        self.window = window
        self.low_threshold = low_confidence_threshold
        self.proportion = cfg.metric in PROPORTION_METRICS
        self.control = cfg.control_variant
        self.treatments = cfg.treatments
        self.shares = dict(cfg.variants)
        self.fingerprint = _fingerprint(cfg, window, low_confidence_threshold)
        self._size_ms = max(1, int(round(window.size_seconds * 1000)))
        self._lateness_ms = int(round(window.lateness_seconds * 1000))
        self.reset()

    def reset(self) -> None:
        """Forget everything: the experiment starts again from its next event."""
        self.max_ts_ms: int | None = None
        self.count = 0  # experiment events, for count windows
        self.late = 0  # late events since the last closed window
        self.open: dict[int, _Window] = {}
        self.samples = {v: 0 for v in self.shares}  # assignments since the start, per intended variant
        self.unexpected: dict[str, int] = {}
        self.metric = {v: ArmStats() for v in self.shares}
        self.tests = {t: self._test(self.cfg.metric) for t in self.treatments}
        # Proportion guardrails get an always-valid interval of their difference, like the primary metric.
        self.guard_tests = {(i, t): SequentialTest("proportion", alpha=self.cfg.alpha, tau2=self.cfg.tau2,
                                                   min_samples=self.cfg.min_samples)
                            for i, g in enumerate(self.cfg.guardrails) if g.metric != "latency_p99_ms"
                            for t in self.treatments}  # fmt: skip
        self.planned: int | None = self.cfg.planned_samples or None

    def _test(self, metric: str) -> SequentialTest:
        kind = "proportion" if metric in PROPORTION_METRICS else "mean"
        return SequentialTest(kind, alpha=self.cfg.alpha, tau2=self.cfg.tau2, min_samples=self.cfg.min_samples)

    # -- feeding -----------------------------------------------------------------------------------------------
    def variant_of(self, e: Event) -> str | None:
        return e.variant if self.cfg.variant_field == "variant" else e.version

    def add(self, e: Event, variant: str) -> list[ExperimentResult]:
        """Add one event of the experiment's model with its variant; return the windows it closed."""
        w = self.window
        if w.kind == "time":
            start = int(window_start_ms(e.ts_ms, self._size_ms))
            if self.max_ts_ms is not None and is_late(start + self._size_ms, self.max_ts_ms, self._lateness_ms):
                self.late += 1  # its window has closed
                return []
            key = start
        else:
            key = self.count // w.events
            self.count += 1
        win = self.open.get(key)
        if win is None:
            start, end = (key, key + self._size_ms) if w.kind == "time" else (e.ts_ms, e.ts_ms)
            win = self.open[key] = _Window(key, start, end)
        if w.kind == "count":
            win.start_ms, win.end_ms = min(win.start_ms, e.ts_ms), max(win.end_ms, e.ts_ms)
        win.events += 1
        self._observe(win, e, variant)
        closed = []
        if self.max_ts_ms is None or e.ts_ms > self.max_ts_ms:
            self.max_ts_ms = e.ts_ms
            if w.kind == "time":
                due = [k for k in self.open if closed_by_ms(k + self._size_ms, self.max_ts_ms, self._lateness_ms)]
                closed = [self._close(k, partial=False) for k in sorted(due)]
        if w.kind == "count" and win.events >= w.events:
            closed.append(self._close(key, partial=False))
        return closed

    def _observe(self, win: _Window, e: Event, variant: str) -> None:
        if variant not in self.shares:
            name = variant if variant in win.unexpected or len(win.unexpected) < _MAX_UNEXPECTED else OTHER
            win.unexpected[name] = win.unexpected.get(name, 0) + 1
            return
        arm = win.arms.get(variant)
        if arm is None:
            arm = win.arms[variant] = _Arm(window_seed(self.window.seed, self.cfg.name, variant, win.key))
        arm.n += 1
        failed = e.error is not None
        arm.errors += failed
        if e.confidence is not None and not failed:
            arm.conf_n += 1
            arm.low_n += e.confidence < self.low_threshold
        if e.latency_ms is not None:
            arm.latency(e.latency_ms)
        metric = self.cfg.metric
        if metric in ("accuracy", "misclassification_rate"):
            if e.label is not None and not failed and e.prediction is not None:
                hit = (e.prediction == e.label) == (metric == "accuracy")
                arm.successes += hit
                arm.observe(1.0 if hit else 0.0)
        elif metric == "error_rate":
            arm.successes += failed
            arm.observe(1.0 if failed else 0.0)
        elif metric == "outcome":
            if e.outcome is not None:
                arm.observe(e.outcome)
        elif e.confidence is not None and not failed:  # confidence
            arm.observe(e.confidence)

    def flush(self) -> list[ExperimentResult]:
        """Close every open window now (``partial``), e.g. at the end of a replay."""
        return [self._close(k, partial=True) for k in sorted(self.open)]

    # -- a look ------------------------------------------------------------------------------------------------
    def _close(self, key: int, *, partial: bool) -> ExperimentResult:
        win = self.open.pop(key)
        cfg = self.cfg
        empty = _Arm(0)
        arms = {v: win.arms.get(v, empty) for v in self.shares}
        window_stats = {v: arms[v].metric_stats(self.proportion) for v in self.shares}
        for v in self.shares:
            self.samples[v] += arms[v].n
            self.metric[v] = self.metric[v] + window_stats[v]
        for name, n in win.unexpected.items():
            if name not in self.unexpected and len(self.unexpected) >= _MAX_UNEXPECTED:
                name = OTHER
            self.unexpected[name] = self.unexpected.get(name, 0) + n
        srm = sample_ratio_mismatch({**self.unexpected, **self.samples}, self.shares, alpha=cfg.srm_alpha)
        self._plan()
        higher = HIGHER_IS_BETTER[cfg.metric]
        comparisons = []
        for t in self.treatments:
            seq = self.tests[t].update(window_stats[self.control], window_stats[t])
            good = seq.direction == ("increase" if higher else "decrease")
            comparisons.append(Comparison(
                variant=t, control=self.control, always_valid=seq, fixed_horizon=self._fixed(t),
                guardrails=tuple(self._guardrail(i, g, t, arms) for i, g in enumerate(cfg.guardrails)),
                improved=seq.significant and good, degraded=seq.significant and not good,
            ))  # fmt: skip
        variants = tuple(
            VariantFigures(
                variant=v, intended_share=srm.intended_share[i], samples=self.samples[v], window_samples=arms[v].n,
                metric_n=self.metric[v].n, metric_mean=self.metric[v].mean if self.metric[v].n else math.nan,
                window_metric_n=window_stats[v].n,
                window_metric_mean=window_stats[v].mean if window_stats[v].n else math.nan,
            )
            for i, v in enumerate(self.shares)
        )  # fmt: skip
        late, self.late = self.late, 0
        return ExperimentResult(
            experiment=cfg.name, model=cfg.model, metric=cfg.metric, higher_is_better=higher,
            window_kind=self.window.kind, window_start_ms=win.start_ms, window_end_ms=win.end_ms,
            window_seq=0 if self.window.kind == "time" else key, partial=partial, late=late, variants=variants,
            srm=srm, comparisons=tuple(comparisons), planned_samples=self.planned,
        )  # fmt: skip

    def _plan(self) -> None:
        """Fix the planned sample size once (config, or ``mde`` with the control's first tested baseline)."""
        cfg = self.cfg
        if self.planned is not None or cfg.mde <= 0:
            return
        base = self.metric[self.control]
        if base.n < cfg.min_samples:
            return
        try:
            if self.proportion:
                self.planned = required_sample_size(mde=cfg.mde, p_baseline=min(max(base.mean, 1e-6), 1 - 1e-6),
                                                    alpha=cfg.alpha, power=cfg.power)
            elif base.sd > 0:
                self.planned = required_sample_size(mde=cfg.mde, sd=base.sd, alpha=cfg.alpha, power=cfg.power)
        except ValueError:
            # p_baseline + mde outside (0, 1): try the decrease, which is just as good a plan.
            try:
                self.planned = required_sample_size(mde=-cfg.mde, p_baseline=base.mean, alpha=cfg.alpha,
                                                    power=cfg.power)
            except ValueError:
                return
        if self.planned is not None:
            log_event(logging.INFO, "experiment planned sample size fixed", experiment=cfg.name,
                      planned_samples=self.planned)

    def _fixed(self, t: str) -> FixedHorizonResult | None:
        if self.planned is None:
            return None
        a, b = self.metric[self.control], self.metric[t]
        if self.proportion:
            return two_proportion_z_test(round(a.total), a.n, round(b.total), b.n, planned_n=max(2, self.planned),
                                         alpha=self.cfg.alpha)
        return welch_t_test(a.mean, 0.0 if a.n < 2 else a.sd, a.n, b.mean, 0.0 if b.n < 2 else b.sd, b.n,
                            planned_n=max(2, self.planned), alpha=self.cfg.alpha)

    def _guardrail(self, i: int, g: GuardrailConfig, t: str, arms: dict[str, _Arm]) -> GuardrailResult:
        if g.metric == "latency_p99_ms":
            # Per window: a latency regression shows at once and is large against its noise.
            a = arms[self.control].latency_p99(self.cfg.min_samples)
            b = arms[t].latency_p99(self.cfg.min_samples)
            return evaluate_guardrail(g.metric, a, b, g.direction, g.tolerance, relative=g.relative)
        ca, ct = arms[self.control], arms[t]
        if g.metric == "error_rate":
            wa, wb = ArmStats.from_successes(ca.n, ca.errors), ArmStats.from_successes(ct.n, ct.errors)
        else:  # low_confidence_ratio
            wa, wb = ArmStats.from_successes(ca.conf_n, ca.low_n), ArmStats.from_successes(ct.conf_n, ct.low_n)
        seq = self.guard_tests[(i, t)].update(wa, wb)
        if not (math.isfinite(seq.ci_low) and math.isfinite(seq.ci_high)):
            return evaluate_guardrail(g.metric, None, None, g.direction, g.tolerance, relative=g.relative)
        # Cumulative, judged on the always-valid interval: a breach holds with the experiment's confidence.
        return evaluate_guardrail(g.metric, seq.mean_a, seq.mean_b, g.direction, g.tolerance, relative=g.relative,
                                  interval=(seq.ci_low, seq.ci_high))

    # -- checkpoints -------------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "fingerprint": self.fingerprint, "max_ts_ms": self.max_ts_ms, "count": self.count, "late": self.late,
            "open": [w.state() for w in self.open.values()], "samples": dict(self.samples),
            "unexpected": dict(self.unexpected),
            "metric": {v: [s.n, s.mean, s.m2] for v, s in self.metric.items()},
            "tests": {t: s.to_state() for t, s in self.tests.items()},
            "guard_tests": [[i, t, s.to_state()] for (i, t), s in self.guard_tests.items()],
            "planned": self.planned,
        }  # fmt: skip

    def restore(self, s: dict) -> bool:
        """Continue from :meth:`state`; return False (and start afresh) if the experiment's settings changed."""
        if s.get("fingerprint") != self.fingerprint:
            self.reset()
            return False
        self.max_ts_ms, self.count, self.late = s["max_ts_ms"], s["count"], s["late"]
        self.open = {w["key"]: _Window.from_state(w) for w in s["open"]}
        self.samples = dict(s["samples"])
        self.unexpected = dict(s["unexpected"])
        self.metric = {v: ArmStats(*x) for v, x in s["metric"].items()}
        self.tests = {t: SequentialTest.from_state(x) for t, x in s["tests"].items()}
        self.guard_tests = {(i, t): SequentialTest.from_state(x) for i, t, x in s["guard_tests"]}
        self.planned = s["planned"]
        return True


# -- every experiment of a pipeline ---------------------------------------------------------------------------
class ExperimentSet:
    """The trackers of every ``[[experiments]]`` entry; events of other models pass through untouched."""

    def __init__(self, config: Config, *, low_threshold: Callable[[str], float] | None = None):
        self.config = config
        # The low-confidence threshold of each experiment's model (Pipeline.low_threshold); the configured
        # value when built alone.
        threshold = low_threshold or (lambda model: config.detect.low_confidence_threshold or 0.5)
        self.trackers = {
            e.name: ExperimentTracker(e, config.window, low_confidence_threshold=threshold(e.model))
            for e in config.experiments
        }
        self._by_model: dict[str, list[ExperimentTracker]] = {}
        for t in self.trackers.values():
            self._by_model.setdefault(t.cfg.model, []).append(t)
        self._shadow_marker = config.shadow.marker

    def add_events(self, events: list[Event]) -> list[ExperimentResult]:
        """Add a batch of valid events in arrival order; return the results of the windows they closed."""
        out: list[ExperimentResult] = []
        by_model, marker = self._by_model, self._shadow_marker
        for e in events:
            trackers = by_model.get(e.model)
            if trackers is None or e.variant == marker:
                continue  # not an experiment's model, or a shadow prediction (served by no variant)
            for t in trackers:
                variant = t.variant_of(e)
                if variant is not None:
                    out.extend(t.add(e, variant))
        return out

    def flush(self) -> list[ExperimentResult]:
        return [r for t in self.trackers.values() for r in t.flush()]

    @property
    def open_windows(self) -> int:
        return sum(len(t.open) for t in self.trackers.values())

    def state(self) -> dict:
        return {name: t.state() for name, t in self.trackers.items()}

    def restore(self, state: dict) -> None:
        for name, s in state.items():
            t = self.trackers.get(name)
            if t is None:
                log_event(logging.INFO, "experiment no longer configured; its checkpointed state is dropped",
                          experiment=name)
            elif not t.restore(s):
                log_event(logging.WARNING, "experiment settings changed; it starts again from the next event",
                          experiment=name)
