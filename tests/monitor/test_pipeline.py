"""The pipeline: windowing, lateness, partial flushes, attribution, reproducibility across batching/restarts."""

import json

import numpy as np
import pytest

from monitor.config import load_config
from monitor.devkit.synth.traffic import generate_events, write_events
from monitor.jobs.profile_builder import build_profile
from monitor.pipeline import Pipeline, Record

T0 = 1_764_000_000_000  # aligned to 5-minute windows? 1_764_000_000_000 % 300_000 == 0


def cfg(**over):
    base = {"source.kind": "stdin", "window.size_seconds": 60, "window.lateness_seconds": 10, "window.min_events": 5,
            "window.max_future_seconds": 1e9}
    base.update(over)
    return load_config(env={}, overrides=base)


def ev(ts_ms, model="m", version="1", **kw):
    e = {"ts": ts_ms, "model": model, "version": version, "prediction": kw.pop("prediction", "pos"),
         "probabilities": {"pos": 0.8, "neg": 0.2}, "latency_ms": 10.0, "text": "some words here"}
    e.update(kw)
    return Record(json.dumps(e).encode(), "test")


def run(pipeline, records, batch=1000):
    out = []
    for lo in range(0, len(records), batch):
        out += [r.to_dict() for r in pipeline.process(records[lo : lo + batch]).windows]
    return out


def flush(pipeline):
    return [r.to_dict() for r in pipeline.flush().windows]


def test_windows_close_on_watermark_and_late_events_are_counted():
    p = Pipeline(cfg())
    res = run(p, [ev(T0 + 1_000), ev(T0 + 59_000), ev(T0 + 65_000)])
    assert res == []  # watermark 65s - 10s lateness = 55s < 60s: first window still open
    res = run(p, [ev(T0 + 30_000), ev(T0 + 70_000)])  # 30s: within lateness, still accepted
    assert [r["events"] for r in res] == [3] and res[0]["window_start"] == "2025-11-24T16:00:00.000Z"
    res = run(p, [ev(T0 + 2_000), ev(T0 + 200_000)])  # 2s: its window closed -> late
    assert p.stats.late == 1
    assert [r["events"] for r in res] == [2]  # window 60..120 closes, carrying the late count
    assert res[0]["late"] == 1
    flushed = flush(p)
    assert [r["partial"] for r in flushed] == [True] and flushed[0]["events"] == 1


def test_streams_are_windowed_separately():
    p = Pipeline(cfg())
    res = run(p, [ev(T0, model="a"), ev(T0, model="b", version="2"), ev(T0 + 100_000, model="a")])
    # b went quiet: its window closes as the partition's watermark, moved by a, passes it (not partial)
    assert [(r["model"], r["version"], r["partial"]) for r in res] == [("a", "1", False), ("b", "2", False)]
    assert [(r["model"], r["version"]) for r in flush(p)] == [("a", "1")]


def test_an_active_stream_behind_the_others_keeps_its_own_watermark():
    # b logs 50 s behind a (more than the 10 s lateness) but never goes quiet: nothing of it is late
    p = Pipeline(cfg())
    recs = [r for i in range(200) for r in (ev(T0 + 50_000 + i * 1000, model="a"), ev(T0 + i * 1000, model="b"))]
    res = run(p, recs, batch=7) + flush(p)
    assert p.stats.late == 0
    assert sum(r["events"] for r in res if r["model"] == "b") == 200
    assert all(not r["partial"] for r in res if r["model"] == "b" and r["window_end"] < "2025-11-24T16:03:00")


def test_count_windows_and_min_events():
    p = Pipeline(cfg(**{"window.kind": "count", "window.events": 4, "window.min_events": 4}))
    res = run(p, [ev(T0 + i) for i in range(10)], batch=3)
    assert [(r["events"], r["window_seq"], r["partial"]) for r in res] == [(4, 0, False), (4, 1, False)]
    assert res[0]["skip_reason"] == "no_reference"
    last = flush(p)
    assert last[0]["events"] == 2 and last[0]["partial"]


def test_invalid_events_are_attributed_to_their_stream():
    p = Pipeline(cfg())
    bad = Record(json.dumps({"ts": T0, "model": "m", "version": "1", "prediction": "x", "latency_ms": -1}).encode(), "x:2")
    res = run(p, [ev(T0), bad, Record(b"not json", "x:3"), ev(T0 + 100_000)])
    assert res[0]["invalid"] == 1
    assert dict(p.stats.invalid) == {"negative_latency": 1, "malformed_json": 1}


def test_future_timestamps_are_rejected_not_windowed():
    p = Pipeline(cfg(**{"window.max_future_seconds": 60}), now_ms=lambda: T0)
    run(p, [ev(T0), ev(T0 + 3_600_000)])
    assert p.stats.invalid["future_timestamp"] == 1 and p.open_windows == 1


def test_a_label_event_from_the_future_is_rejected_as_future_not_as_an_internal_error():
    p = Pipeline(cfg(**{"window.max_future_seconds": 60, "labels.enabled": True}), now_ms=lambda: T0)
    label = {"kind": "label", "ts": T0 + 3_600_000, "model": "m", "request_id": "r1", "label": "pos"}
    run(p, [ev(T0), Record(json.dumps(label).encode(), "x:2")])
    assert dict(p.stats.invalid) == {"future_timestamp": 1}


def test_summary_fields_are_exact():
    p = Pipeline(cfg(**{"window.min_events": 1}))
    recs = [ev(T0 + i, latency_ms=float(i), prediction="pos" if i % 3 else "neg", label="pos",
               probabilities={"pos": 0.9, "neg": 0.1} if i % 3 else {"pos": 0.3, "neg": 0.7}) for i in range(1, 101)]
    recs.append(Record(json.dumps({"ts": T0 + 5, "model": "m", "version": "1", "error": "boom", "latency_ms": 1.0}).encode()))
    r = flush(p) if run(p, recs) == [] else None
    r = r[0]
    assert r["events"] == 101 and r["error_rate"] == pytest.approx(1 / 101)
    assert r["predictions"] == {"neg": 33, "pos": 67}
    assert r["accuracy"] == pytest.approx(67 / 100) and r["labelled"] == 100
    lat = np.array([float(i) for i in range(1, 101)] + [1.0])
    assert r["latency_ms"]["p99"] == pytest.approx(np.percentile(lat, 99))
    assert r["latency_ms"]["max"] == 100.0
    assert r["confidence"]["mean"] == pytest.approx((67 * 0.9 + 33 * 0.7) / 100)
    ent = lambda p: -(p * np.log2(p) + (1 - p) * np.log2(1 - p))  # noqa: E731
    assert r["confidence"]["entropy_mean"] == pytest.approx((67 * ent(0.9) + 33 * ent(0.7)) / 100)
    assert r["sampled"] is False


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    d = tmp_path_factory.mktemp("traffic")
    events = list(generate_events(9000, seed=3, rate_per_s=20, drift_after=7000))
    write_events(d / "ref.jsonl", events[:3000])
    profile, _ = build_profile(str(d / "ref.jsonl"))
    records = [Record(json.dumps(e).encode(), f"l:{i}") for i, e in enumerate(events[3000:])]
    # shuffle arrival a little (bounded disorder, within lateness) to exercise the watermark
    rng = np.random.default_rng(0)
    order = np.argsort(np.arange(len(records)) + rng.integers(0, 20, len(records)))
    return profile, [records[i] for i in order]


def _results(profile, records, batch, reservoir=500):
    p = Pipeline(cfg(**{"window.reservoir_size": reservoir, "window.min_events": 100}), profiles={profile.model: profile})
    return run(p, records, batch) + flush(p)


def test_results_do_not_depend_on_batching(traffic):
    profile, records = traffic
    a = _results(profile, records, 1000)
    b = _results(profile, records, 37)
    assert len(a) > 5 and any(r["sampled"] for r in a)
    assert a == b


def test_state_restore_mid_stream_reproduces_results(traffic):
    profile, records = traffic
    expected = _results(profile, records, 500)
    config = cfg(**{"window.reservoir_size": 500, "window.min_events": 100})
    first = Pipeline(config, profiles={profile.model: profile})
    out = run(first, records[:2345], 500)
    state = json.loads(json.dumps(first.state(), default=lambda b: b.hex()))  # must survive serialisation
    second = Pipeline(config, profiles={profile.model: profile})
    second.restore(_unhex(state))
    out += run(second, records[2345:], 333) + flush(second)
    assert out == expected


def _unhex(obj):
    if isinstance(obj, dict):
        return {k: (bytes.fromhex(v) if k == "rows" else _unhex(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unhex(v) for v in obj]
    return obj


@pytest.mark.parametrize("setting, expected_low_ratio", [(0.0, 1.0), (0.5, 0.0), (0.7, 1.0)])
def test_low_confidence_default_works_for_a_binary_model(setting, expected_low_ratio):
    # A binary model's top probability is never below 0.5: the old fixed default 0.5 could never fire. The
    # default rule puts the threshold halfway between chance and certainty, 0.75 for two classes.
    p = Pipeline(cfg(**{"window.kind": "count", "window.events": 10, "detect.low_confidence_threshold": setting}))
    recs = [ev(T0 + i, probabilities={"pos": 0.6, "neg": 0.4}) for i in range(10)]
    (result,) = p.process(recs).windows
    assert result.confidence.low_ratio == expected_low_ratio
    assert p.low_threshold("m") == (0.75 if setting == 0.0 else setting)
