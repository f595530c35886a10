"""Shadow joins: out-of-order arrival, missing partners, duplicates, bounded memory, checkpoints, window summaries."""

from __future__ import annotations

import random
import tracemalloc

import msgspec
import numpy as np
import pytest
from scipy import stats

from monitor.ab.shadow import ShadowJoiner, ShadowPair, ShadowWindows, shadow_summary
from monitor.config import ShadowConfig, WindowConfig
from monitor.ingest.events import Event


def _events(n: int, seed: int, *, shadow_missing=0.0, served_missing=0.0, max_gap_ms=500):
    """Served and shadow events of n requests, 10 ms apart; each shadow lags its served one by up to max_gap_ms."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = 1_000_000 + 10 * i
        pred = rng.choice(["pos", "neg"])
        if rng.random() >= served_missing:
            out.append(("served", f"r{i}", ts, pred))
        if rng.random() >= shadow_missing:
            out.append(("shadow", f"r{i}", ts + rng.randint(0, max_gap_ms), pred if rng.random() < 0.9 else "x"))
    return out


def _feed(joiner, events):
    pairs = []
    for side, rid, ts, pred in events:
        p = joiner.add(rid, ts, shadow=side == "shadow", prediction=pred, confidence=0.5, latency_ms=1.0)
        if p is not None:
            pairs.append(p)
    return pairs


@pytest.mark.parametrize("order", ["in_order", "shuffled_locally", "shadow_first"])
def test_every_request_is_joined_once_whatever_the_arrival_order(order):
    events = _events(2_000, seed=1)
    if order == "shuffled_locally":  # out of order by up to ~50 events (0.5 s of event time)
        rng = random.Random(2)
        events = sorted(events, key=lambda e: e[2] + rng.randint(0, 500))
    elif order == "shadow_first":
        events = sorted(events, key=lambda e: (int(e[1][1:]), e[0] == "served"))  # each shadow before its served
    joiner = ShadowJoiner(ttl_ms=5_000, max_pending=10_000)
    pairs = _feed(joiner, events)
    joiner.flush()
    assert sorted(p.request_id for p in pairs) == sorted(f"r{i}" for i in range(2_000))
    assert joiner.unmatched_served == joiner.unmatched_shadow == joiner.duplicates == 0
    truth = {rid: pred for side, rid, _, pred in events if side == "shadow"}
    assert all(p.shadow_prediction == truth[p.request_id] for p in pairs)


def test_missing_partners_are_counted_unmatched_on_each_side():
    events = _events(3_000, seed=4, shadow_missing=0.2, served_missing=0.1)
    served = {rid for side, rid, *_ in events if side == "served"}
    shadow = {rid for side, rid, *_ in events if side == "shadow"}
    joiner = ShadowJoiner(ttl_ms=2_000, max_pending=10_000)
    pairs = _feed(joiner, events)
    joiner.flush()
    assert {p.request_id for p in pairs} == served & shadow
    assert joiner.unmatched_served == len(served - shadow)
    assert joiner.unmatched_shadow == len(shadow - served)
    assert joiner.pending == 0


def test_duplicates_are_dropped_and_the_first_event_wins():
    joiner = ShadowJoiner(ttl_ms=10_000, max_pending=100)
    assert joiner.add("r1", 1_000, shadow=False, prediction="a") is None
    assert joiner.add("r1", 1_001, shadow=False, prediction="b") is None  # duplicate while waiting
    pair = joiner.add("r1", 1_005, shadow=True, prediction="c")
    assert (pair.served_prediction, pair.shadow_prediction) == ("a", "c")
    assert joiner.add("r1", 1_010, shadow=True, prediction="d") is None  # duplicate after the join
    assert joiner.add("r1", 1_020, shadow=False, prediction="e") is None
    assert (joiner.joined, joiner.duplicates, joiner.unmatched_served) == (1, 3, 0)


def test_an_event_arriving_past_its_ttl_is_unmatched_at_once():
    joiner = ShadowJoiner(ttl_ms=1_000, max_pending=100)
    joiner.add("new", 10_000, shadow=False)
    assert joiner.add("old", 5_000, shadow=True) is None
    assert joiner.unmatched_shadow == 1 and joiner.pending == 1


def test_memory_stays_bounded_under_a_flood_of_unmatched_request_ids():
    cap = 1_000
    joiner = ShadowJoiner(ttl_ms=3_600_000, max_pending=cap)  # a long TTL: only the cap protects memory
    joiner.add("keep", 0, shadow=False)
    tracemalloc.start()
    try:
        for i in range(20_000):  # warm up to the cap
            joiner.add(f"flood-{i}", 1 + i, shadow=i % 2 == 0, prediction="p")
        base, _ = tracemalloc.get_traced_memory()
        for i in range(20_000, 100_000):
            joiner.add(f"flood-{i}", 1 + i, shadow=i % 2 == 0, prediction="p")
            assert joiner.pending <= cap
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(joiner._heap) <= 2 * cap + 64 and len(joiner._joined_ids) <= cap
    assert grown < 2_000_000, f"memory grew by {grown} bytes under the flood"
    assert joiner.evicted_overflow == 100_000 - cap + 1  # "keep" was the oldest, so it went first
    assert joiner.unmatched_served + joiner.unmatched_shadow == joiner.evicted_overflow
    assert joiner.add("keep", 100_001, shadow=True) is None  # its partner is long gone


def test_state_round_trip_continues_exactly():
    events = _events(3_000, seed=8, shadow_missing=0.1, served_missing=0.1)
    a = ShadowJoiner(ttl_ms=300, max_pending=50)
    first = _feed(a, events[:2_500])
    b = ShadowJoiner.from_state(msgspec.msgpack.decode(msgspec.msgpack.encode(a.to_state())))
    assert _feed(a, events[2_500:]) == _feed(b, events[2_500:])
    assert a.counters() == b.counters() and first


def test_validation():
    for kwargs, match in (({"ttl_ms": -1, "max_pending": 1}, "ttl_ms"), ({"ttl_ms": 1, "max_pending": 0}, "max_pending"),
                          ({"ttl_ms": 1, "max_pending": 1, "shadow_marker": ""}, "shadow_marker")):
        with pytest.raises(ValueError, match=match):
            ShadowJoiner(**kwargs)


# -- summaries -----------------------------------------------------------------------------------------------------
def test_summary_figures_and_ks_against_scipy():
    rng = np.random.default_rng(0)
    sc, hc = rng.uniform(0.5, 1.0, 400), rng.uniform(0.4, 0.9, 400)
    pairs = [ShadowPair(f"r{i}", i, i, "a", "a" if i % 5 else "b", float(sc[i]), float(hc[i]), 10.0, 12.0 + i % 3)
             for i in range(400)]
    pairs.append(ShadowPair("err", 0, 0, None, "a", None, 0.9, None, 5.0))
    s = shadow_summary(pairs, min_agreement=0.9)
    assert (s.n, s.compared, s.served_errors) == (401, 400, 1)
    assert s.agreement_rate == pytest.approx(0.8) and s.agreement_low
    assert s.confidence_diff_mean == pytest.approx((hc - sc).mean())
    ref = stats.ks_2samp(sc, hc, method="asymp")
    assert s.ks_statistic == pytest.approx(ref.statistic) and s.ks_p_value == pytest.approx(ref.pvalue, rel=1e-3)
    assert s.confidence_drifted
    empty = shadow_summary([])
    assert empty.n == 0 and empty.to_dict()["agreement_rate"] is None and not empty.agreement_low


# -- in the pipeline: windows of pairs -------------------------------------------------------------------------------
def _event(rid, ts, *, shadow, pred="pos", model="m"):
    return Event(ts_ms=ts, model=model, version="2" if shadow else "1", prediction=pred, confidence=0.8,
                 latency_ms=12.0 if shadow else 10.0, request_id=rid, variant="shadow" if shadow else None)


def test_windows_close_after_lateness_plus_ttl_and_count_exactly():
    windows = ShadowWindows(ShadowConfig(enabled=True, ttl_seconds=2.0), WindowConfig(size_seconds=10.0, lateness_seconds=1.0))
    events = []
    for i in range(1_000):  # 100 requests a second, shadow 100 ms later; 1 in 10 disagrees
        ts = 1_700_000_000_000 + 10 * i
        events += [_event(f"r{i}", ts, shadow=False), _event(f"r{i}", ts + 100, shadow=True, pred="pos" if i % 10 else "neg")]
    events.sort(key=lambda e: e.ts_ms)
    results = windows.add_events(events)
    assert results == []  # the first window ends at +10 s; its pairs could still complete until +13 s
    results = windows.add_events([_event("late", 1_700_000_013_000, shadow=False)])
    (r,) = results
    assert r.summary.n == 1_000 and r.summary.agreement_rate == pytest.approx(0.9)
    assert r.summary.latency_diff_mean_ms == pytest.approx(2.0) and r.joins["joined"] == 1_000
    assert r.to_dict()["window_start"] == "2023-11-14T22:13:20.000Z"
    assert windows.flush() == [] and windows.joiner.unmatched_served == 1


def test_models_filter_keeps_unshadowed_models_out():
    windows = ShadowWindows(ShadowConfig(enabled=True, models=("m",)), WindowConfig())
    windows.add_events([_event("a", 1_000, shadow=False, model="other")])
    assert windows.joiner.pending == 0 and windows.joiner.counters()["no_request_id"] == 0
    windows.add_events([_event("b", 1_000, shadow=False, model="m")])
    assert windows.joiner.pending == 1
