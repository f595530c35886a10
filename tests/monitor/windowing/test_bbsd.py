"""BBSD end to end: the profile's per-class probability samples, the window's sampled probability columns,
``drift.probabilities`` in the result, its Prometheus series and SQL drift rows."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from monitor.config import load_config
from monitor.jobs.profile_builder import ProfileOptions, build_profile
from monitor.ingest.reference import Profile
from monitor.pipeline import Pipeline, Record
from sinks.prometheus import PrometheusSink
from sinks.sql.windows import drift_rows
from tests.factories import replay_windows

T0 = 1_764_000_000_000
CLASSES = ("pos", "neg", "neu")


def events(n: int, *, seed: int, shifted: bool = False, t0: int = T0, step_ms: int = 100) -> list[dict]:
    """Three-class traffic. Shifted: the same predicted-class mix and the same top probabilities, but the rest
    of the mass moves from one runner-up class to the other, which only the per-class probabilities show."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        top = int(rng.choice(3, p=[0.5, 0.3, 0.2]))
        p_top = float(rng.uniform(0.6, 0.95))
        rest = 1.0 - p_top
        share = rng.uniform(0.0, 0.1) if shifted else rng.uniform(0.4, 0.6)
        others = [c for c in range(3) if c != top]
        p = [0.0, 0.0, 0.0]
        p[top], p[others[0]], p[others[1]] = p_top, rest * share, rest * (1 - share)
        probs = {CLASSES[c]: round(p[c], 6) for c in range(3)}
        if i % 5 == 0:  # another key order: the columns must follow the class names, not the order
            probs = dict(reversed(list(probs.items())))
        e = {"ts": t0 + i * step_ms, "model": "m", "version": "1", "prediction": CLASSES[top],
             "probabilities": probs, "latency_ms": 10.0, "text": "some words here"}
        if i % 97 == 0:
            e = {"ts": e["ts"], "model": "m", "version": "1", "error": "boom", "latency_ms": 5.0}
        elif i % 89 == 0:
            e.pop("probabilities")
            e["confidence"] = p_top
        out.append(e)
    return out


@pytest.fixture(scope="module")
def profile(tmp_path_factory) -> Profile:
    path = tmp_path_factory.mktemp("bbsd") / "ref.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events(6000, seed=1, t0=T0 - 10**9)))
    profile, summary = build_profile(str(path), ProfileOptions(batch_size=333))
    assert list(summary.probability_classes) == sorted(CLASSES)
    return profile


def pipeline(profile: Profile, sink=None) -> Pipeline:
    config = load_config(env={}, overrides={"source.kind": "stdin", "window.size_seconds": 60, "window.lateness_seconds": 0,
                                            "window.min_events": 100, "window.reservoir_size": 400,
                                            "window.max_future_seconds": 1e9})
    return Pipeline(config, profiles={"m": profile}, sink=sink)



def test_profile_keeps_a_sample_per_class_and_round_trips(profile):
    assert profile.probability_classes == ("neg", "neu", "pos")
    # every event with probabilities names all three classes (errors and probability-less events left out)
    n = 6000 - len(range(0, 6000, 97)) - len([i for i in range(0, 6000, 89) if i % 97])
    assert all(profile.probabilities[c].size == n for c in CLASSES)
    assert np.all((profile.probabilities["pos"] >= 0) & (profile.probabilities["pos"] <= 1))
    again = Profile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert all(np.array_equal(again.probabilities[c], profile.probabilities[c]) for c in CLASSES)


def test_reference_like_traffic_is_quiet(profile):
    windows = [w for w in replay_windows(pipeline(profile), events(6000, seed=2)) if w.tested]
    assert len(windows) >= 9
    assert all(w.drift.probabilities is not None for w in windows)
    assert not any(w.drift.probabilities.drifted for w in windows)
    assert {c.feature for c in windows[0].drift.probabilities.classes} == set(CLASSES)
    # the window's reservoir sample (400 rows); errors and events without probabilities are NaN there, untested
    assert all(c.window_n <= 400 for w in windows for c in w.drift.probabilities.classes)
    assert any(c.window_n < 400 for w in windows for c in w.drift.probabilities.classes)


def test_a_probability_shift_at_the_same_class_mix_is_caught_by_bbsd_only(profile):
    windows = [w for w in replay_windows(pipeline(profile), events(1200, seed=3, shifted=True)) if w.tested]
    assert windows
    for w in windows:
        d = w.drift.probabilities
        assert d.drifted and w.drifted
        assert {c.feature for c in d.classes if c.drifted} >= {"neg", "neu"}
        assert not w.drift.prediction.drifted and not w.drift.confidence.drifted
        j = w.to_dict()["drift"]["probabilities"]
        assert list(j) == ["drifted", "correction", "alpha", "min_effect", "classes"]
        assert list(j["classes"]["neg"])[:6] == ["statistic", "p_value", "p_value_adjusted", "threshold", "min_effect", "drifted"]
        rows = [r for r in drift_rows(w.drift) if r["detector"] == "probabilities"]
        assert {r["feature"] for r in rows} == {c.feature for c in d.classes if c.drifted}


def test_results_do_not_depend_on_batching_or_restarts(profile):
    evs = events(3000, seed=4) + events(1500, seed=5, shifted=True, t0=T0 + 300_000)
    expected = [w.to_dict() for w in replay_windows(pipeline(profile), evs, 1000)]
    assert any(w["drift"]["probabilities"] and w["drift"]["probabilities"]["drifted"] for w in expected)
    for batch in (1, 7):
        assert [w.to_dict() for w in replay_windows(pipeline(profile), evs, batch)] == expected
    first = pipeline(profile)
    records = [Record(json.dumps(e).encode(), f"l:{i}") for i, e in enumerate(evs)]
    out = [w.to_dict() for w in first.process(records[:2222]).windows]
    second = pipeline(profile)
    second.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(first.state())))  # as checkpoints store it
    out += [w.to_dict() for w in list(second.process(records[2222:]).windows) + list(second.flush().windows)]
    assert out == expected


def test_prometheus_series_per_class_and_the_detector_verdict(profile):
    reg = CollectorRegistry()
    sink = PrometheusSink(reg)
    replay_windows(pipeline(profile, sink), events(1200, seed=3, shifted=True))
    lab = {"model": "m", "version": "1"}
    assert reg.get_sample_value("nlp_drift_detector_detected", {**lab, "detector": "probabilities"}) == 1.0
    for c in CLASSES:
        series = {**lab, "detector": "probabilities", "feature": c}
        assert 0.0 <= reg.get_sample_value("nlp_drift_statistic", series) <= 1.0
        assert reg.get_sample_value("nlp_drift_p_value", series) is not None
    assert reg.get_sample_value("nlp_drift_detected", {**lab, "detector": "probabilities", "feature": "neu"}) == 1.0


def test_class_labels_are_bounded_like_prediction_class(profile):
    reg = CollectorRegistry()
    sink = PrometheusSink(reg, max_classes=2)
    replay_windows(pipeline(profile, sink), events(1200, seed=3, shifted=True))
    lab = {"model": "m", "version": "1", "detector": "probabilities"}
    kept = [c for c in CLASSES if reg.get_sample_value("nlp_drift_p_value", {**lab, "feature": c}) is not None]
    assert len(kept) == 2
    assert reg.get_sample_value("nlp_drift_p_value", {**lab, "feature": "__other__"}) is None


def test_a_profile_without_probabilities_runs_no_bbsd(profile):
    import dataclasses

    bare = dataclasses.replace(profile, probabilities={})
    windows = [w for w in replay_windows(pipeline(bare), events(1200, seed=3, shifted=True)) if w.tested]
    assert windows and all(w.drift.probabilities is None for w in windows)
