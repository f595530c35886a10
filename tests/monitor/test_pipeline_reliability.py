"""Poison records, batch-independent attribution, quiet and stale streams, bounded stream count."""

import json
import logging

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from monitor.config import load_config
from monitor.devkit.synth.traffic import generate_events, write_events
from monitor.ingest.features import base_features
from monitor.jobs.profile_builder import build_profile
from monitor.pipeline import INTERNAL_REASON, OTHER_STREAM, Pipeline, Record
from sinks.prometheus import PrometheusSink
from tests.monitor.runtime.poison_daemon import poisoned_featurizer

T0 = 1_764_000_000_000
MARKER = "ZZPOISONZZ"


def cfg(**over):
    base = {"source.kind": "stdin", "window.size_seconds": 60, "window.lateness_seconds": 10, "window.min_events": 20,
            "window.max_future_seconds": 1e9, "window.reservoir_size": 200}
    base.update(over)
    return load_config(env={}, overrides=base)


def ev(ts_ms, model="m", version="1", text="some words here", **kw):
    e = {"ts": ts_ms, "model": model, "version": version, "prediction": "pos", "probabilities": {"pos": 0.8, "neg": 0.2},
         "latency_ms": 10.0, "text": text, **kw}
    return Record(json.dumps(e).encode(), f"t:{ts_ms}")


class Letters:
    def __init__(self):
        self.items = []

    def write(self, raw, reason, detail, position):
        self.items.append((raw, reason, detail))


def run(p, records, batch):
    out = []
    for lo in range(0, len(records), batch):
        out += [r.to_dict() for r in p.process(records[lo : lo + batch]).windows]
    return out + [r.to_dict() for r in p.flush().windows]


def by_key(results):
    return sorted(results, key=lambda r: (r["model"], r["version"], r["window_start"]))


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    write_events(d / "ref.jsonl", generate_events(3000, seed=1, rate_per_s=20))
    return build_profile(str(d / "ref.jsonl"))[0]


def _mixed(n=4000, seed=3):
    """Two streams (one goes quiet a third of the way in), garbage, rejections naming streams (one not seen
    yet), late events, all interleaved."""
    rng = np.random.default_rng(seed)
    events = list(generate_events(n, seed=seed, rate_per_s=20))
    out = []
    for i, e in enumerate(events):
        if e["model"] == "sentiment" and i % 3 == 0 and i < n // 3:
            e = dict(e, model="quiet")
        out.append(Record(json.dumps(e).encode(), f"l:{i}"))
        if rng.random() < 0.03:
            out.append(Record(b"not json", "g"))
        if rng.random() < 0.03:
            out.append(Record(json.dumps({"ts": e["ts"], "model": e["model"], "version": e["version"],
                                          "prediction": "x", "latency_ms": -1}).encode(), "neg"))
        if i == 100:
            out.append(Record(json.dumps({"ts": e["ts"], "model": "newcomer", "version": "9", "prediction": "x", "latency_ms": -1}).encode()))
        if rng.random() < 0.02:  # late: a minute and a half behind
            out.append(Record(json.dumps(dict(e, ts=e["ts"] - 90_000)).encode(), "late"))
    for j in range(300):  # the newcomer arrives later
        out.append(Record(json.dumps(dict(events[-1], model="newcomer", version="9", ts=events[-1]["ts"] + j * 50)).encode()))
    return out


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_invalid_and_late_counts_do_not_depend_on_batching(profile, batch):
    records = _mixed()
    expected = by_key(run(Pipeline(cfg(), profiles={profile.model: profile}), records, 1000))
    got = by_key(run(Pipeline(cfg(), profiles={profile.model: profile}), records, batch))
    assert got == expected
    assert sum(r["invalid"] for r in expected) > 50 and sum(r["late"] for r in expected) > 20
    quiet = [r for r in expected if r["model"] == "quiet"]
    assert quiet and not any(r["partial"] for r in quiet)  # its windows closed by the partition's watermark
    assert sum(r["invalid"] for r in expected if r["model"] == "newcomer") >= 1  # held until it appeared


def test_poison_records_are_isolated_and_leave_no_trace(profile, caplog):
    clean = _mixed(2000, seed=5)
    poison = [ev(T0, text=f"bad {MARKER} text"), ev(T0 + 1, model="sentiment", text=MARKER)]
    dirty = []
    for i, rec in enumerate(clean):
        dirty.append(rec)
        if i % 500 == 250:
            dirty.append(poison[i % 2])
    n_poison = len(dirty) - len(clean)
    letters = Letters()
    featurize = poisoned_featurizer(MARKER)
    expected_p = Pipeline(cfg(), profiles={profile.model: profile}, featurize=featurize)
    with caplog.at_level(logging.DEBUG):
        p = Pipeline(cfg(), profiles={profile.model: profile}, featurize=featurize, dead_letter=letters)
        got = []
        for lo in range(0, len(dirty), 300):
            got += [r.to_dict() for r in p.process(dirty[lo : lo + 300]).windows]
    expected = []
    for lo in range(0, len(clean), 300):
        expected += [r.to_dict() for r in expected_p.process(clean[lo : lo + 300]).windows]
    assert p.state() == expected_p.state()  # as if the poison had never arrived
    assert by_key(got + [r.to_dict() for r in p.flush().windows]) == by_key(expected + [r.to_dict() for r in expected_p.flush().windows])
    assert p.stats.invalid[INTERNAL_REASON] == n_poison
    assert p.stats.lines == len(dirty) and p.stats.valid + sum(p.stats.invalid.values()) == len(dirty)
    poisoned = [(raw, detail) for raw, reason, detail in letters.items if reason == INTERNAL_REASON]
    assert sorted(raw for raw, _ in poisoned) == sorted(r.value for r in dirty if MARKER.encode() in r.value)
    assert {detail for _, detail in poisoned} == {"ValueError"}  # the type, never the message
    assert "poison record isolated" in caplog.text and MARKER not in caplog.text


def test_a_detector_that_raises_still_gives_the_window_a_result(profile):
    p = Pipeline(cfg(**{"window.min_events": 5}), profiles={profile.model: profile})

    def boom(window):
        raise FloatingPointError("detector bug")

    p._detectors[profile.model].input.test = boom
    records = [ev(T0 + i * 100, model=profile.model) for i in range(50)] + [ev(T0 + 200_000, model=profile.model)]
    res = [r.to_dict() for r in p.process(records).windows]
    assert [(r["events"], r["tested"], r["skip_reason"]) for r in res] == [(50, False, INTERNAL_REASON)]
    assert p.stats.internal_errors["detectors"] == 1


def test_a_sink_that_raises_is_counted_not_propagated():
    class Broken(PrometheusSink):
        def observe_batch(self, *a, **kw):
            raise RuntimeError("sink bug")

    p = Pipeline(cfg(), sink=Broken(CollectorRegistry()))
    res = p.process([ev(T0), ev(T0 + 100_000)]).windows
    assert [r.events for r in res] == [1] and p.stats.internal_errors["sink.observe_batch"] == 1


def test_restart_from_state_mid_stream_with_poison_and_quiet_streams(profile):
    records = _mixed(3000, seed=9)
    records[777:777] = [ev(T0, text=MARKER)]
    config = cfg()
    featurize = poisoned_featurizer(MARKER)
    expected = by_key(run(Pipeline(config, profiles={profile.model: profile}, featurize=featurize), records, 250))
    for cut in (400, 1900):
        first = Pipeline(config, profiles={profile.model: profile}, featurize=featurize)
        out = []
        for lo in range(0, cut, 250):
            out += [r.to_dict() for r in first.process(records[lo : min(lo + 250, cut)]).windows]
        second = Pipeline(config, profiles={profile.model: profile}, featurize=featurize)
        second.restore(_roundtrip(first.state()))
        out += run(second, records[cut:], 93)
        assert by_key(out) == expected


def _roundtrip(state):
    import msgspec

    return msgspec.msgpack.decode(msgspec.msgpack.encode(state))


def test_stale_versions_leave_metrics_and_free_their_label_slots():
    # 25 daily versions with max_streams = 20: without a TTL the last five would be __other__ on /metrics.
    registry = CollectorRegistry()
    sink = PrometheusSink(registry, max_streams=20)
    p = Pipeline(cfg(**{"metrics.stream_ttl_seconds": 3600, "metrics.max_streams": 20}), sink=sink)
    day = 86_400_000
    closed = []
    for v in range(25):
        closed += p.process([ev(T0 + v * day + i * 1000, version=str(v)) for i in range(100)]).windows
    assert p.tracked_streams <= 2  # the old versions left memory
    pred = lambda v: registry.get_sample_value("nlp_predictions_total", {"model": "m", "version": v, "prediction_class": "pos"})  # noqa: E731
    assert pred("24") == 100  # its own label values: the slots of the stale versions were given back
    assert pred("0") is None and pred("__other__") is None
    assert registry.get_sample_value("nlp_predictions_total", {"model": "__other__", "version": "__other__", "prediction_class": "pos"}) is None
    assert registry.get_sample_value("nlpmon_label_values_folded_total", {"label": "stream"}) == 0
    # a stream's windows closed (not partial) before it was forgotten: version 23's verdict was exported
    assert any(r.version == "23" and not r.partial for r in closed)


def test_tracked_streams_are_capped_and_the_excess_folded():
    registry = CollectorRegistry()
    p = Pipeline(cfg(**{"metrics.max_tracked_streams": 10, "window.min_events": 1}), sink=PrometheusSink(registry))
    records = [ev(T0 + i, model=f"model-{i}") for i in range(500)] + [ev(T0 + 200_000, model="model-0")]
    res = p.process(records).windows
    assert p.tracked_streams == 10
    other = [r for r in res if (r.model, r.version, r.segment or "") == OTHER_STREAM]
    assert len(other) == 1 and other[0].events == 491
    assert p.stats.untracked == 491
    assert registry.get_sample_value("nlpmon_events_untracked_total") == 491


def test_idle_source_closes_due_windows_by_processing_time():
    p = Pipeline(cfg())
    p.process([ev(T0 + i * 1000) for i in range(30)])
    assert p.close_idle(1_000).windows == ()  # not enough: the window ends 30 s after the last event
    closed = p.close_idle(45_000).windows
    assert [(r.events, r.partial) for r in closed] == [(30, False)]
    assert p.process([ev(T0 + 31_000)]).windows == () and p.stats.late == 1  # its window is closed for good
