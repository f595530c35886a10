"""Drift per segment (window.by_segment): separate streams, their own verdicts, folding, checkpoints."""

import json
from collections import Counter

import msgspec
import pytest

from monitor.config import load_config
from monitor.devkit.synth.traffic import generate_events, write_events
from monitor.jobs.profile_builder import ProfileOptions, build_profile
from monitor.pipeline import Pipeline, Record
from monitor.windowing.segments import OTHER_SEGMENT, profile_name

T0 = 1_764_000_000_000


def cfg(**over):
    base = {"source.kind": "stdin", "window.size_seconds": 60, "window.lateness_seconds": 10, "window.min_events": 100,
            "window.max_future_seconds": 1e9, "window.reservoir_size": 500, "window.by_segment": True}
    base.update(over)
    return load_config(env={}, overrides=base)


def ev(ts_ms, segment=None, model="m", **kw):
    e = {"ts": ts_ms, "model": model, "version": "1", "prediction": "pos", "probabilities": {"pos": 0.8, "neg": 0.2},
         "latency_ms": 10.0, "text": "some words here", **kw}
    if segment is not None:
        e["segment"] = segment
    return Record(json.dumps(e).encode(), "test")


def run(pipeline, records, batch=1000):
    out = []
    for lo in range(0, len(records), batch):
        out += pipeline.process(records[lo: lo + batch]).windows
    return out + list(pipeline.flush().windows)


@pytest.fixture(scope="module")
def two_segments(tmp_path_factory):
    """A model's traffic in segments en (70%) and fr (30%); after event 7000 only fr drifts."""
    d = tmp_path_factory.mktemp("segments")
    events = list(generate_events(12000, seed=5, rate_per_s=20, drift_after=7000, segments={"en": 0.7, "fr": 0.3},
                                  drift_segments=("fr",)))
    write_events(d / "ref.jsonl", events[:3000])
    profile, _ = build_profile(str(d / "ref.jsonl"))
    drift_ms = events[7000]["ts"]
    records = [Record(json.dumps(e).encode(), f"l:{i}") for i, e in enumerate(events[3000:])]
    return profile, records, drift_ms


def test_only_the_drifting_segments_windows_are_flagged(two_segments):
    profile, records, drift_ms = two_segments
    results = [r for r in run(Pipeline(cfg(), profiles={profile.model: profile}), records) if not r.partial]
    by_segment = {s: [r for r in results if r.segment == s] for s in ("en", "fr")}
    assert {r.segment for r in results} == {"en", "fr"}
    assert all(r.tested for r in results)
    before = [r for r in by_segment["fr"] if r.window_end_ms <= drift_ms]
    after = [r for r in by_segment["fr"] if r.window_start_ms >= drift_ms]
    assert len(before) >= 3 and len(after) >= 3 and len(by_segment["en"]) >= 6
    assert [r.drifted for r in after] == [True] * len(after)
    assert not any(r.drifted for r in before)
    assert not any(r.drifted for r in by_segment["en"])  # en never drifted, before or after
    # Each event is in exactly one segment's window.
    assert sum(r.events for r in run(Pipeline(cfg(), profiles={profile.model: profile}), records)) == len(records)


def test_without_by_segment_the_segment_is_ignored(two_segments):
    profile, records, _ = two_segments
    results = run(Pipeline(cfg(**{"window.by_segment": False}), profiles={profile.model: profile}), records[:3000])
    assert results and all(r.segment is None and "segment" not in r.to_dict() for r in results)
    on = run(Pipeline(cfg(), profiles={profile.model: profile}), records[:3000])
    assert {r.to_dict()["segment"] for r in on} == {"en", "fr"}


def _by_key(results):
    """Results of different streams close in an order that depends on batching; each stream's do not."""
    return sorted(results, key=lambda d: (d.get("segment") or "", d["window_start"]))


def test_segment_results_do_not_depend_on_batching_or_restarts(two_segments):
    profile, records, _ = two_segments
    records = records[:5000]
    expected = _by_key([r.to_dict() for r in run(Pipeline(cfg(), profiles={profile.model: profile}), records, 1000)])
    assert _by_key([r.to_dict() for r in run(Pipeline(cfg(), profiles={profile.model: profile}), records, 37)]) == expected
    first = Pipeline(cfg(), profiles={profile.model: profile})
    out = [r.to_dict() for r in first.process(records[:2345]).windows]
    # The checkpoint is msgpack (monitor/runtime/kafka_daemon.py): the state must survive it.
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(first.state()))
    assert {s.get("segment") for s in state["streams"]} == {"en", "fr"}
    second = Pipeline(cfg(), profiles={profile.model: profile})
    second.restore(state)
    out += [r.to_dict() for r in run(second, records[2345:], 333)]
    assert _by_key(out) == expected


def test_segments_beyond_max_segments_are_folded_into_other_and_counted():
    recs = []
    for i in range(600):  # segments s0..s4 in turn and, every 7th event, none
        recs.append(ev(T0 + i * 100, None if i % 7 == 0 else f"s{i % 5}"))
    p = Pipeline(cfg(**{"window.max_segments": 3, "window.min_events": 1}))
    results = run(p, recs, batch=50)
    events = Counter()
    for r in results:
        events[r.segment] += r.events
    segs = [None if i % 7 == 0 else f"s{i % 5}" for i in range(600)]
    first_three = ["s1", "s2", "s3"]  # the first segments to arrive (i = 1, 2, 3)
    assert set(events) == {None, OTHER_SEGMENT, *first_three}
    folded = sum(1 for s in segs if s in ("s0", "s4"))
    assert events[OTHER_SEGMENT] == folded and p.stats.segment_folded == folded
    assert p.stats.to_dict()["segment_folded"] == folded
    assert events[None] == segs.count(None)
    # Batching does not change which segments are admitted.
    again = run(Pipeline(cfg(**{"window.max_segments": 3, "window.min_events": 1})), recs, batch=7)
    assert _by_key([r.to_dict() for r in again]) == _by_key([r.to_dict() for r in results])


def test_a_forgotten_segment_frees_its_slot():
    p = Pipeline(cfg(**{"window.max_segments": 1, "window.min_events": 1, "metrics.stream_ttl_seconds": 100}))
    p.process([ev(T0, "a")] + [ev(T0 + i * 1000) for i in range(1, 300)])  # a quiet after T0; time moves on
    assert ("m", "1", "a") not in p._streams
    out = run(p, [ev(T0 + 301_000, "b")])
    assert "b" in {r.segment for r in out}
    assert p.stats.segment_folded == 0
    run(p, [ev(T0 + 302_000, "c")])  # b holds the only slot now
    assert p.stats.segment_folded == 1


class _Forgets:
    def __init__(self):
        self.calls = []

    def forget_stream(self, model, version, segment=""):
        self.calls.append((model, version, segment))

    def __getattr__(self, name):  # every other sink call
        return lambda *a, **k: None


def test_the_last_segment_of_a_version_to_go_frees_its_labels():
    sink = _Forgets()
    p = Pipeline(cfg(**{"window.min_events": 1, "metrics.stream_ttl_seconds": 100}), sink=sink)
    p.process([ev(T0, "a"), ev(T0 + 1000, "b")] + [ev(T0 + i * 1000, "b", model="other") for i in range(2, 300)])
    # Both segments expired: each drops its own series, the last one its (model, version)'s too.
    assert sink.calls == [("m", "1", "a"), ("m", "1", "b"), ("m", "1", "")]


def test_rejections_count_in_their_segments_window():
    bad = Record(json.dumps({"ts": T0, "model": "m", "version": "1", "segment": "fr", "prediction": "pos", "latency_ms": -1}).encode())
    p = Pipeline(cfg(**{"window.min_events": 1}))
    p.process([ev(T0, "en"), bad])  # fr has no stream yet: held for its first window
    out = run(p, [ev(T0 + 1000, "fr")])
    invalid = {r.segment: r.invalid for r in out}
    assert invalid == {"en": 0, "fr": 1}


def test_a_checkpoint_from_before_segments_restores():
    p = Pipeline(cfg(**{"window.by_segment": False}))
    p.process([ev(T0 + i * 100) for i in range(50)])
    state = p.state()
    for s in state["streams"]:  # what a version without segments wrote
        s.pop("segment", None)
        for acc in s["open"]:
            del acc["segment"]
    state["held"] = [["x", "1", 2]]
    restored = Pipeline(cfg())
    restored.restore(state)
    (r,) = restored.flush().windows
    assert (r.events, r.segment) == (50, None)
    assert restored._streams.held == {("x", "1", ""): 2}


def test_a_segments_own_profile_is_used_when_present(two_segments, tmp_path):
    profile, records, drift_ms = two_segments
    # fr's own reference is its drifted traffic: its late windows match it, so they are no longer flagged.
    fr_late = [json.loads(r.value) for r in records if json.loads(r.value).get("segment") == "fr"
               and json.loads(r.value)["ts"] >= drift_ms]
    write_events(tmp_path / "fr.jsonl", fr_late[: len(fr_late) // 2])
    fr_profile, _ = build_profile(str(tmp_path / "fr.jsonl"), ProfileOptions(segment="fr"))
    assert fr_profile.segment == "fr" and fr_profile.events == len(fr_late) // 2
    p = Pipeline(cfg(), profiles={profile.model: profile, profile_name(profile.model, "fr"): fr_profile})
    results = [r for r in run(p, records) if not r.partial]
    after = [r for r in results if r.segment == "fr" and r.window_start_ms >= drift_ms]
    before = [r for r in results if r.segment == "fr" and r.window_end_ms <= drift_ms]
    assert after and sum(r.drifted for r in after) <= len(after) // 3
    assert before and all(r.drifted for r in before)  # the undrifted fr now differs from fr's own reference
    assert not any(r.drifted for r in results if r.segment == "en")  # en still against the model's profile
