"""The accuracy estimator with ``[labels] refresh_calibration`` is exactly-once: labels results (their estimates
and intervals) do not depend on how the records were batched, nor on checkpoints restored in between."""

from __future__ import annotations

import json
import random

import msgspec
import pytest

from detectors.accuracy_estimate import AccuracyEstimate
from monitor.ab.label_tally import RecentCalibration, Tally
from monitor.config import load_config
from monitor.devkit.synth.traffic import generate_events
from monitor.pipeline import Pipeline, Record

T0 = 1_764_000_000_000


def _cfg():
    return load_config(env={}, overrides={
        "source.kind": "stdin", "window.size_seconds": 30, "window.lateness_seconds": 5, "window.min_events": 5,
        "window.max_future_seconds": 1e9, "window.by_segment": True, "labels.enabled": True,
        "labels.max_delay_seconds": 60, "labels.refresh_calibration": True})  # fmt: skip


def _records() -> list[Record]:
    """An unsegmented model and a segmented one, labels for 40% of the predictions 0 to 90 s later."""
    labels = {"label_event_share": 0.4, "label_delay_ms": (0, 90_000)}
    a = generate_events(3000, seed=5, rate_per_s=20, **labels)
    b = generate_events(1500, seed=6, rate_per_s=10, model="intent", version="7",
                        segments={"en": 0.5, "fr": 0.3, "de": 0.2}, **labels)
    events = sorted([*a, *b], key=lambda e: e["ts"])
    return [Record(json.dumps(e).encode(), f"r{i}") for i, e in enumerate(events)]


def _run(recs: list[Record], seed: int | None, *, restores: bool) -> tuple[list, list]:
    """Window and labels results as dicts; ``seed`` None: one uninterrupted run in batches of 500, else batches of
    random sizes, with a checkpoint (msgpack, as runtime/partitions.py) restored into a fresh pipeline at random."""
    rng = random.Random(seed)
    p, windows, labels, i = Pipeline(_cfg()), [], [], 0
    while i < len(recs):
        n = 500 if seed is None else rng.randint(1, 400)
        b = p.process(recs[i:i + n])
        i += n
        windows += [r.to_dict() for r in b.windows]
        labels += [r.to_dict() for r in b.labels]
        if restores and rng.random() < 0.5:
            state = msgspec.msgpack.decode(msgspec.msgpack.encode(p.state()))
            p = Pipeline(_cfg())
            p.restore(state)
    b = p.flush()
    return windows + [r.to_dict() for r in b.windows], labels + [r.to_dict() for r in b.labels]


@pytest.fixture(scope="module")
def uninterrupted():
    recs = _records()
    return recs, _run(recs, None, restores=False)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("restores", [False, True])
def test_labels_results_with_refreshed_estimates_do_not_depend_on_batching_or_restores(uninterrupted, seed, restores):
    recs, (windows, labels) = uninterrupted
    assert sum(r.get("estimated_accuracy_low") is not None for r in labels) >= 5
    assert len({r["segment"] for r in windows if r.get("segment")}) == 3
    got_windows, got_labels = _run(recs, seed, restores=restores)
    # Segment windows closing in one batch come out in their streams' order: the same results, in another order.
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    assert sorted(map(key, got_windows)) == sorted(map(key, windows))
    assert got_labels == labels  # exactly: each estimate and interval to the last bit


def _interval(e, lo, hi, ok=True):
    return AccuracyEstimate(e, lo, hi, 0.95, 10.0, ok)


def test_segment_estimates_blend_the_same_in_any_order():
    parts = [(0.1, 7, _interval(0.1, 0.05, 0.3)), (0.7, 13, _interval(0.7, 0.6, 0.8)),
             (0.2, 3, _interval(0.2, 0.1, 0.3, ok=False)), (0.3333, 11, _interval(0.3333, 0.3, 0.4))]
    blends = set()
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]):
        t = Tally(("m", "1", T0), T0, 10)
        for i in order:
            t.add_estimate(*parts[i])
        blends.add(t.blended())
    assert len(blends) == 1
    (e, lo, hi, ok), = blends
    assert e == pytest.approx((0.1 * 7 + 0.7 * 13 + 0.2 * 3 + 0.3333 * 11) / 34) and ok is False
    t = Tally(("m", "1", T0), T0, 10)
    t.add_estimate(0.123456789, 5)
    assert t.blended() == (0.123456789, None, None, None)  # one estimate is its own mean, exactly


def test_a_tally_from_an_older_checkpoint_keeps_its_blend():
    t = Tally(("m", "1", T0), T0, 2)
    old = t.state()[:19]  # the layout before the estimates were kept one by one
    old[8], old[15], old[16:19] = 0.8, 100, [0.7, 0.9, True]
    r = Tally.from_state(old)
    assert r.blended() == (0.8, 0.7, 0.9, True)
    r.add_estimate(0.6, 300, _interval(0.6, 0.5, 0.7))
    assert r.blended()[0] == pytest.approx((0.8 * 100 + 0.6 * 300) / 400)
    r2 = Tally.from_state(msgspec.msgpack.decode(msgspec.msgpack.encode(r.state())))
    assert r2.blended() == r.blended()
    older = t.state()[:15]  # before segments and intervals: no estimate yet
    assert Tally.from_state(older).blended() == (None, None, None, None)


def test_evidence_of_tallies_with_the_same_start_does_not_depend_on_which_closed_first():
    # Two versions' tallies of one window start: one may be closed (in the recent entries) or still open (``also``)
    # when a window closes, depending on the batching; the decay's ages must not depend on which.
    def tally(version, n):
        t = Tally(("m", version, T0), T0 + 60_000, 2)
        t.labelled, t.cal_n, t.cal_ok = n, [0, n], [0, n // 2]
        return t

    a, b = tally("1", 10), tally("2", 30)
    results = []
    for closed, also in (([a], [b]), ([b], [a]), ([a, b], []), ([b, a], [])):
        cal = RecentCalibration(2, 5)
        for t in closed:
            cal.add("m", t)
        results.append(cal.evidence("m", T0 + 60_000, also, decay=0.5))
    assert all(r == results[0] for r in results)
