"""nlp_experiment_* and nlp_shadow_* from the pipeline's results, read back with get_sample_value."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from monitor.config import load_config
from monitor.pipeline import Pipeline, Record
from sinks.prometheus import PrometheusSink
from tests import factories
from tests.monitor.ab.test_experiments import NOW, traffic


@pytest.fixture
def reg():
    return CollectorRegistry()


def _pipeline(tmp_path, reg, *, max_streams=20):
    p = tmp_path / "c.toml"
    p.write_text('[source]\npath = "x"\n[window]\nsize_seconds = 60\n[shadow]\nenabled = true\nttl_seconds = 5\n'
                 '[[experiments]]\nname = "exp"\nmodel = "m"\nvariants = {a = 50, b = 50}\nplanned_samples = 9000\n'
                 '[[experiments.guardrails]]\nmetric = "error_rate"\ntolerance = 0.01\n')
    sink = PrometheusSink(reg, max_streams=max_streams)
    return Pipeline(load_config(p, env={}), now_ms=NOW, sink=sink), sink


def _feed(pipeline, events):
    return pipeline.process([Record(json.dumps(e).encode()) for e in events])


def test_experiment_gauges_follow_the_latest_closed_window(tmp_path, reg):
    pipeline, _ = _pipeline(tmp_path, reg)
    assert reg.get_sample_value("nlp_experiment_samples", {"experiment": "exp", "model": "m", "variant": "a"}) is None
    (last,) = _feed(pipeline, traffic(20_000, seed=2, acc=(0.80, 0.88))).experiments[-1:]
    v = {"experiment": "exp", "model": "m"}
    get = lambda name, **labels: reg.get_sample_value(name, {**v, **labels})  # noqa: E731
    assert get("nlp_experiment_samples", variant="a") + get("nlp_experiment_samples", variant="b") == last.samples
    assert get("nlp_experiment_intended_share", variant="b") == 0.5
    c = last.comparisons[0].always_valid
    assert get("nlp_experiment_lift", variant="b") == pytest.approx(c.lift)
    assert get("nlp_experiment_lift_ci_low", variant="b") == pytest.approx(c.ci_low) and c.ci_low > 0
    assert get("nlp_experiment_p_value", variant="b") == pytest.approx(c.p_value)
    assert get("nlp_experiment_significant", variant="b") == 1.0 and get("nlp_experiment_degraded", variant="b") == 0.0
    assert get("nlp_experiment_lift", variant="a") is None  # the control has no lift
    assert get("nlp_experiment_srm_mismatch") == 0.0 and 0 < get("nlp_experiment_srm_p_value") <= 1
    assert get("nlp_experiment_planned_samples") == 9000
    assert get("nlp_experiment_guardrail_breached", variant="b", guardrail="error_rate") == 0.0
    assert get("nlp_experiment_windows_total") == 16  # 1,000 s of events: 16 closed 60 s windows


def test_before_min_samples_the_interval_is_not_exported(tmp_path, reg):
    pipeline, _ = _pipeline(tmp_path, reg)
    _feed(pipeline, traffic(150, seed=3, rate_per_s=1))  # one event a second: two windows of ~30 per variant
    labels = {"experiment": "exp", "model": "m", "variant": "b"}
    assert reg.get_sample_value("nlp_experiment_lift", labels) is not None
    assert reg.get_sample_value("nlp_experiment_p_value", labels) == 1.0
    assert reg.get_sample_value("nlp_experiment_lift_ci_low", labels) is None


def test_shadow_gauges_and_join_counters(tmp_path, reg):
    pipeline, _ = _pipeline(tmp_path, reg)
    events = traffic(4_000, seed=4)
    shadows = [dict(e, ts=e["ts"] + 200, variant="shadow", prediction="neg" if i % 8 == 0 else "pos")
               for i, e in enumerate(events) if "prediction" in e and i % 2 == 0]
    _feed(pipeline, sorted(events + shadows, key=lambda e: e["ts"]))
    assert reg.get_sample_value("nlp_shadow_agreement_ratio", {"model": "m"}) == pytest.approx(0.75, abs=0.03)
    assert reg.get_sample_value("nlp_shadow_agreement_low", {"model": "m"}) == 1.0
    assert reg.get_sample_value("nlp_shadow_pairs", {"model": "m"}) > 500
    joined = reg.get_sample_value("nlpmon_shadow_events_total", {"outcome": "joined"})
    unmatched = reg.get_sample_value("nlpmon_shadow_events_total", {"outcome": "unmatched_served"})
    assert joined == pytest.approx(len(shadows), abs=40) and unmatched > 1_500
    assert reg.get_sample_value("nlpmon_shadow_events_total", {"outcome": "duplicates"}) == 0
    assert reg.get_sample_value("nlpmon_shadow_pending") >= 0


def test_experiment_labels_are_bounded(reg):
    sink = PrometheusSink(reg, max_streams=2)
    for name in ("e1", "e2", "e3", "e4"):
        sink.experiment_closed(factories.experiment(1_764_000_000_000 - 60_000, experiment=name))
    assert reg.get_sample_value("nlp_experiment_windows_total", {"experiment": "__other__", "model": "m"}) == 2
    assert reg.get_sample_value("nlpmon_label_values_folded_total", {"label": "experiment"}) == 2
