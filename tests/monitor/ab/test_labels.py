"""Late label events: the join by request id, per-window realised accuracy, bounds, checkpoints, batching."""

from __future__ import annotations

import json
from collections import defaultdict

import msgspec
import numpy as np
import pytest

from monitor.ab.labels import JOIN_OUTCOMES, MAX_CLASSES, OTHER_CLASS, LabelJoin
from monitor.config import load_config
from monitor.ingest.events import Event, InvalidEvent, LabelEvent, decode_event
from monitor.pipeline import Pipeline, Record

T0 = 1_764_000_000_000  # a multiple of 60 s
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def pred(ts, rid=None, cls="pos", conf=0.8, model="m", version="1", error=None):
    return Event(ts_ms=ts, model=model, version=version, prediction=None if error else cls, error=error,
                 confidence=conf, request_id=rid)


def label(ts, rid, lab="pos", model="m"):
    return LabelEvent(ts_ms=ts, model=model, request_id=rid, label=lab)


def join(delay_ms=HOUR, max_pending=10_000, size_ms=MIN, **kw):
    return LabelJoin(max_delay_ms=delay_ms, max_pending=max_pending, size_ms=size_ms, **kw)


def feed(j, items):
    """Feed events in order (predictions and labels mixed); return every result closed."""
    for e in items:
        (j.add_label if isinstance(e, LabelEvent) else j.add_prediction)(e)
    return j.close_due()


def closed_after(j, ts):
    return j.advance(ts)


# -- timing: 0 s to days later, before the prediction, twice, never, unknown, past the delay --------------------
@pytest.mark.parametrize("later_ms", [0, 1, 59_000, 10 * MIN, 5 * HOUR, 2 * DAY, 3 * DAY])  # 3 days == the delay
def test_a_label_up_to_the_delay_later_is_matched(later_ms):
    j = join(delay_ms=3 * DAY)
    feed(j, [pred(T0 + 5, "r1", cls="pos"), label(T0 + 5 + later_ms, "r1", "pos")])
    assert j.counts["matched"] == 1 and j.pending == 0
    [r] = closed_after(j, T0 + MIN + 3 * DAY)  # the window's end plus the delay
    assert (r.labelled, r.accuracy, r.unmatched, r.expired) == (1, 1.0, 0, 0)


def test_the_result_waits_for_the_whole_label_period():
    j = join(delay_ms=HOUR)
    feed(j, [pred(T0, "r1")])
    assert closed_after(j, T0 + MIN + HOUR - 1) == []
    [r] = closed_after(j, T0 + MIN + HOUR)
    assert (r.window_start_ms, r.window_end_ms, r.partial) == (T0, T0 + MIN, False)


def test_a_label_before_its_prediction_waits_for_it():
    j = join()
    feed(j, [label(T0 + 10, "r1", "neg"), pred(T0 + 20, "r1", cls="pos")])
    assert j.counts["matched"] == 1 and j.pending == 0
    [r] = closed_after(j, T0 + MIN + HOUR)
    assert (r.labelled, r.accuracy) == (1, 0.0)
    assert r.classes[0].label == "neg" and (r.classes[0].labelled, r.classes[0].recall) == (1, 0.0)
    assert r.classes[1].label == "pos" and (r.classes[1].predicted, r.classes[1].precision) == (1, 0.0)


def test_a_second_label_is_a_duplicate_and_the_first_one_wins():
    j = join()
    feed(j, [pred(T0, "r1", cls="pos"), label(T0 + 1, "r1", "pos"), label(T0 + 2, "r1", "neg")])
    # ... also when both labels come before the prediction
    feed(j, [label(T0 + 3, "r2", "neg"), label(T0 + 4, "r2", "pos"), pred(T0 + 5, "r2", cls="neg")])
    [r] = closed_after(j, T0 + MIN + HOUR)
    assert (r.labelled, r.accuracy, j.counts["duplicate"]) == (2, 1.0, 2)
    assert r.duplicates == 1  # the one after the match; the other was a duplicate while waiting (no window yet)


def test_a_prediction_whose_label_never_comes_expires():
    j = join()
    feed(j, [pred(T0, "r1"), pred(T0 + 1, "r2"), pred(T0 + 2), label(T0 + 3, "r2")])
    [r] = closed_after(j, T0 + MIN + HOUR)
    assert (r.predictions, r.with_request_id, r.labelled, r.unmatched, r.expired) == (3, 2, 1, 1, 1)
    assert j.counts["expired"] == 1 and j.pending == 0


def test_a_label_for_an_unknown_id_waits_then_counts_as_unknown():
    j = join()
    feed(j, [pred(T0, "r1"), label(T0 + 5, "nobody")])
    assert j.pending == 2
    feed(j, [pred(T0 + HOUR + 6, "r2")])  # the unknown label's wait is over
    assert j.counts["unknown"] == 1 and j.counts["matched"] == 0


def test_a_label_past_the_delay_is_not_matched_and_its_prediction_expired():
    j = join(delay_ms=HOUR)
    feed(j, [pred(T0, "r1"), pred(T0 + 10, "r2"), label(T0 + HOUR + 1, "r1")])  # 1 ms too late
    assert j.counts["matched"] == 0  # its prediction is no longer held: the label waits, in vain
    # a label already more than the delay behind the newest event time cannot even wait: late
    results = feed(j, [pred(T0 + 3 * HOUR), label(T0 + HOUR + 2, "r2")])
    assert (j.counts["late"], j.counts["unknown"]) == (1, 1)
    first = next(r for r in results if r.window_start_ms == T0)
    assert (first.labelled, first.expired, first.accuracy) == (0, 2, None)


def test_late_predictions_after_their_label_period_are_in_no_result():
    j = join(delay_ms=MIN)
    feed(j, [pred(T0, "r1")])
    [r] = closed_after(j, T0 + 2 * MIN)
    feed(j, [pred(T0 + 30, "r9"), label(T0 + 2 * MIN, "r9")])  # its window's tally is closed already
    assert r.predictions == 1 and j.counts["matched"] == 0


def test_error_predictions_count_as_wrong_and_predict_no_class():
    j = join()
    feed(j, [pred(T0, "r1", error="timeout"), label(T0 + 1, "r1", "pos")])
    [r] = closed_after(j, T0 + MIN + HOUR)
    assert (r.labelled, r.accuracy) == (1, 0.0)
    assert [(c.label, c.predicted, c.labelled) for c in r.classes] == [("pos", 0, 1)]


def test_models_are_joined_separately():
    j = join()
    feed(j, [pred(T0, "r1", model="a"), label(T0 + 1, "r1", model="b")])
    assert j.counts["matched"] == 0 and j.pending == 2


# -- memory bound ------------------------------------------------------------------------------------------------
def test_max_pending_bounds_waiting_predictions_and_labels():
    j = join(max_pending=50)
    feed(j, [pred(T0 + i, f"p{i}") for i in range(300)])
    assert len(j._preds) == 50 and j.counts["evicted"] == 250
    feed(j, [label(T0 + 300 + i, f"x{i}") for i in range(300)])
    assert len(j._labels) == 50 and j.counts["evicted"] == 500
    # the survivors are the newest: their labels still match
    feed(j, [label(T0 + 700, "p299"), label(T0 + 701, "p0")])
    assert j.counts["matched"] == 1 and j.counts["late"] == 0
    r = j.flush()[0]
    assert (r.with_request_id, r.labelled, r.evicted, r.expired) == (300, 1, 250, 49)
    assert j.pending == 0 and len(j._preds.q) == 0


def test_the_arrival_order_index_stays_small_when_entries_leave_from_the_middle():
    j = join(max_pending=1_000_000)
    for i in range(20_000):
        j.add_prediction(pred(T0 + i, f"r{i}"))
        j.add_label(label(T0 + i, f"r{i}"))  # joined at once: the entry leaves from the middle
    assert len(j._preds) == 0 and len(j._preds.q) <= 64 + 2
    assert len(j._matched) == 20_000


def test_classes_per_window_are_bounded():
    j = join()
    for i in range(MAX_CLASSES + 50):
        feed(j, [pred(T0 + i, f"r{i}", cls="pos"), label(T0 + i, f"r{i}", f"class-{i}")])
    [r] = closed_after(j, T0 + MIN + HOUR)
    names = [c.label for c in r.classes]
    assert len(names) == MAX_CLASSES + 1 and OTHER_CLASS in names
    assert sum(c.labelled for c in r.classes) == MAX_CLASSES + 50


# -- accuracy equals a direct computation over the joined pairs ----------------------------------------------------
def _random_stream(seed, n=3000, delay_ms=10 * MIN):
    """Predictions ~5/s with ids, 70% labelled after a random delay (some beyond the delay), in arrival order."""
    rng = np.random.default_rng(seed)
    items, truth = [], {}
    ts = T0
    for i in range(n):
        ts += int(rng.exponential(200))
        cls = "pos" if rng.random() < 0.6 else "neg"
        items.append((ts, 0, pred(ts, f"r{i}", cls=cls, conf=float(rng.uniform(0.5, 1)))))
        if rng.random() < 0.7:
            lab = cls if rng.random() < 0.8 else ("neg" if cls == "pos" else "pos")
            later = int(rng.exponential(delay_ms / 3))
            items.append((ts + later, 1, label(ts + later, f"r{i}", lab)))
            truth[f"r{i}"] = (ts, cls, lab, later)
    items.sort(key=lambda x: (x[0], x[1]))
    return [e for _, _, e in items], truth


def _direct(truth, delay_ms, size_ms=MIN):
    """Per window: (labelled, correct, {class: [predicted, labelled, correct]}) over pairs within the delay."""
    out = defaultdict(lambda: [0, 0, defaultdict(lambda: [0, 0, 0])])
    for ts, cls, lab, later in truth.values():
        if later > delay_ms:
            continue
        w = out[ts - ts % size_ms]
        w[0] += 1
        w[1] += cls == lab
        w[2][cls][0] += 1
        w[2][lab][1] += 1
        w[2][cls][2] += cls == lab
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_accuracy_per_window_equals_a_direct_computation(seed):
    delay = 10 * MIN
    items, truth = _random_stream(seed, delay_ms=delay)
    j = join(delay_ms=delay)
    results = feed(j, items) + j.flush()
    direct = _direct(truth, delay)
    assert len(results) >= 10
    for r in results:
        labelled, correct, classes = direct.get(r.window_start_ms, (0, 0, {}))
        assert r.labelled == labelled
        assert r.accuracy == (pytest.approx(correct / labelled) if labelled else None)
        for c in r.classes:
            p, lab, ok = classes[c.label]
            assert (c.predicted, c.labelled, c.correct) == (p, lab, ok)
            assert c.precision == (pytest.approx(ok / p) if p else None)
            assert c.recall == (pytest.approx(ok / lab) if lab else None)
    assert sum(r.labelled for r in results) == sum(1 for t in truth.values() if t[3] <= delay)
    # labels later than the delay arrive in time order here: they wait for a prediction that is gone
    assert j.counts["unknown"] == sum(1 for t in truth.values() if t[3] > delay)
    assert j.counts["late"] == 0


def test_state_restore_at_any_point_gives_the_same_results():
    items, _ = _random_stream(3, n=1500)
    straight = join(delay_ms=10 * MIN)
    expected = feed(straight, items) + straight.flush()
    got = []
    j = join(delay_ms=10 * MIN)
    for lo in range(0, len(items), 137):
        got += feed(j, items[lo:lo + 137])
        state = msgspec.msgpack.decode(msgspec.msgpack.encode(j.state()))
        j = join(delay_ms=10 * MIN)
        j.restore(state)
    got += j.flush()
    assert got == expected
    assert j.counts == straight.counts


# -- calibration refreshed from realised labels -------------------------------------------------------------------
def test_calibration_table_from_realised_labels():
    j = join(delay_ms=MIN, bins=2, calibration_windows=1)
    assert j.calibration_table("m") is None
    feed(j, [pred(T0, "a", conf=0.9), label(T0, "a", "pos"), pred(T0 + 1, "b", conf=0.95), label(T0 + 1, "b", "neg"),
             pred(T0 + 2, "c", conf=0.3), label(T0 + 2, "c", "neg")])
    closed_after(j, T0 + 2 * MIN)
    t = j.calibration_table("m")
    assert t.counts == (1, 2) and t.accuracy == (0.0, 0.5) and t.mean_confidence[1] == pytest.approx(0.925)
    # only the latest calibration_windows windows count
    feed(j, [pred(T0 + 2 * MIN, "d", conf=0.9), label(T0 + 2 * MIN, "d", "pos")])
    closed_after(j, T0 + 4 * MIN)
    assert j.calibration_table("m").counts == (0, 1)


# -- in the pipeline ----------------------------------------------------------------------------------------------
def cfg(**over):
    base = {"source.kind": "stdin", "window.size_seconds": 60, "window.lateness_seconds": 10, "window.min_events": 5,
            "window.max_future_seconds": 1e9, "labels.enabled": True, "labels.max_delay_seconds": 600}
    base.update(over)
    return load_config(env={}, overrides=base)


def records(items):
    out = []
    for e in items:
        if isinstance(e, LabelEvent):
            d = {"kind": "label", "ts": e.ts_ms, "model": e.model, "request_id": e.request_id, "label": e.label}
        else:
            d = {"ts": e.ts_ms, "model": e.model, "version": e.version, "prediction": e.prediction,
                 "probabilities": {"pos": e.confidence, "neg": round(1 - e.confidence, 9)}, "request_id": e.request_id,
                 "text": "some words here"}
        out.append(Record(json.dumps(d).encode(), "test"))
    return out


def run(p, recs, batch):
    windows, labels = [], []
    for lo in range(0, len(recs), batch):
        b = p.process(recs[lo:lo + batch])
        windows += b.windows
        labels += b.labels
    b = p.flush()
    return windows + list(b.windows), labels + list(b.labels)


def test_pipeline_label_events_are_not_predictions_and_results_do_not_depend_on_batching():
    items, truth = _random_stream(4, n=2000)
    recs = records(items)
    runs = [run(Pipeline(cfg()), recs, batch) for batch in (1000, 7, 1)]
    windows, labels = runs[0]
    for other in runs[1:]:
        assert [r.to_dict() for r in other[1]] == [r.to_dict() for r in labels]
        assert [r.to_dict() for r in other[0]] == [r.to_dict() for r in windows]
    assert sum(w.events for w in windows) == 2000  # label events are in no window
    assert sum(w.labelled for w in windows) == 0
    assert sum(r.labelled for r in labels) == sum(1 for t in truth.values() if t[3] <= 600_000)
    assert [r.predictions for r in labels] == [w.events for w in windows]
    assert all(r.to_dict()["result_kind"] == "labels" for r in labels)


def test_pipeline_without_labels_enabled_ignores_label_events():
    items, _ = _random_stream(5, n=300)
    p = Pipeline(cfg(**{"labels.enabled": False}))
    windows, labels = run(p, records(items), 100)
    assert labels == [] and sum(w.events for w in windows) == 300 and p.stats.valid == 300
    assert p.stats.labels == sum(isinstance(e, LabelEvent) for e in items)
    assert "labels" not in p.state()


def test_pipeline_state_restore_mid_stream_equals_an_uninterrupted_run():
    items, _ = _random_stream(6, n=1500)
    recs = records(items)
    expected = run(Pipeline(cfg()), recs, 100)
    p = Pipeline(cfg())
    windows, labels = [], []
    for lo in range(0, len(recs), 100):
        b = p.process(recs[lo:lo + 100])
        windows += b.windows
        labels += b.labels
        state = msgspec.msgpack.decode(msgspec.msgpack.encode(p.state()))
        p = Pipeline(cfg())
        p.restore(state)
    b = p.flush()
    assert [r.to_dict() for r in labels + list(b.labels)] == [r.to_dict() for r in expected[1]]


def test_pipeline_keeps_the_window_estimate_for_its_labels_result():
    items, _ = _random_stream(7, n=1500)
    seen = {}

    def estimate(result, confidences):
        seen[result.window_start_ms] = round(float(np.nanmean(confidences)), 6)
        return seen[result.window_start_ms]

    # the held-out estimate alone (an estimator that takes realised labels as ``evidence``: the next test)
    p = Pipeline(cfg(**{"labels.max_delay_seconds": 60, "labels.refresh_calibration": False}),
                 on_window_confidences=estimate)
    _, labels = run(p, records(items), 50)
    closed = [r for r in labels if not r.partial]
    assert len(closed) >= 3 and all(r.estimated_accuracy == seen[r.window_start_ms] for r in closed)


def test_pipeline_refreshes_the_estimate_from_realised_labels():
    # Issue 21 changed this test: with refresh_calibration the estimator is given the realised labels
    # (``evidence``) to update its table with, rather than being overridden by a table refitted from them.
    items, _ = _random_stream(8, n=3000)
    seen = []

    def estimate(result, confidences, evidence=None):
        seen.append(evidence)
        return 0.123

    p = Pipeline(cfg(**{"labels.refresh_calibration": True, "labels.max_delay_seconds": 60}),
                 on_window_confidences=estimate)
    run(p, records(items), 200)
    assert sum(seen[0].labelled) == 0 and sum(seen[-1].labelled) > 0  # no label period over yet; then labels
    # Without a re-evaluation table: the labels alone update a calibrated prior; every estimate has an interval.
    p = Pipeline(cfg(**{"labels.refresh_calibration": True, "labels.max_delay_seconds": 60}))
    _, labels = run(p, records(items), 200)
    closed = [r for r in labels if r.predictions and r.estimated_accuracy is not None]
    assert len(closed) >= 5 and all(0.5 < r.estimated_accuracy < 1 for r in closed[5:])  # accuracy is about 0.8
    assert all(r.estimated_accuracy_low <= r.estimated_accuracy <= r.estimated_accuracy_high for r in closed)


def test_sink_sees_labels_results_and_join_counters():
    calls = defaultdict(list)

    class Sink:
        def __getattr__(self, name):
            return lambda *a, **k: calls[name].append(a)

    items, _ = _random_stream(9, n=1000)
    p = Pipeline(cfg(), sink=Sink())
    _, labels = run(p, records(items), 100)
    assert [a[0] for a in calls["labels_closed"]] == labels
    totals = defaultdict(int)
    for (deltas,) in calls["count_label_joins"]:
        assert set(deltas) == set(JOIN_OUTCOMES) and min(deltas.values()) >= 0
        for k, v in deltas.items():
            totals[k] += v
    assert dict(totals) == p.labels.counts
    assert sum(a[1] for a in calls["count_records"]) == len(items)  # label records are valid records


# -- decoding -----------------------------------------------------------------------------------------------------
LABEL = {"kind": "label", "ts": T0, "model": "m", "request_id": "r1", "label": "pos"}


@pytest.mark.parametrize("change, reason", [
    ({"request_id": None}, "missing_field"),
    ({"label": None}, "missing_field"),
    ({"model": None}, "missing_field"),
    ({"ts": None}, "missing_field"),
    ({"request_id": ""}, "wrong_type"),
    ({"label": 1}, "wrong_type"),
    ({"version": ""}, "wrong_type"),
    ({"ts": "yesterday"}, "bad_timestamp"),
    ({"prediction": "pos"}, "label_with_prediction"),
    ({"text": "a secret"}, "label_with_prediction"),
    ({"confidence": 0.5}, "label_with_prediction"),
    ({"kind": "labels"}, "unknown_kind"),
    ({"kind": 1}, "wrong_type"),
    ({"schema": 2}, "unsupported_schema"),
])  # fmt: skip
def test_label_events_are_validated_strictly(change, reason):
    obj = {k: v for k, v in {**LABEL, **change}.items() if v is not None}
    with pytest.raises(InvalidEvent) as info:
        decode_event(json.dumps(obj).encode())
    assert info.value.reason == reason
    assert "secret" not in info.value.detail


def test_a_valid_label_event_decodes_on_both_paths():
    from monitor.ingest.events import _slow_decode

    for obj in (LABEL, {**LABEL, "version": "2", "ts": "2026-11-25T10:00:00Z"}, {**LABEL, "ts": 1_764_000_000.5}):
        raw = json.dumps(obj).encode()
        fast, slow = decode_event(raw), _slow_decode(raw, 10_000)
        assert fast == slow and type(fast) is LabelEvent and fast.request_id == "r1"


@pytest.mark.parametrize("max_pending", [40, 100_000])
def test_add_chunk_makes_the_same_decisions_as_one_event_at_a_time(max_pending):
    """add_chunk's written-out common case against add_prediction/add_label, on a stream with every case:
    labels before and after their prediction, duplicates of both, no request id, errors, two models, evictions."""
    rng = np.random.default_rng(12)
    items, _ = _random_stream(13, n=2500)
    extra = []
    for e in items[::7]:
        if isinstance(e, LabelEvent):
            extra.append(label(e.ts_ms + 5, e.request_id, "neg"))  # a second label
        else:
            extra.append(label(e.ts_ms - 50, e.request_id, "pos"))  # a label before its prediction (or a duplicate)
            extra.append(pred(e.ts_ms + 1, e.request_id))  # a second prediction with the same id
    extra += [pred(T0 + int(rng.integers(0, 600_000)), None) for _ in range(200)]  # no request id
    extra += [pred(T0 + int(rng.integers(0, 600_000)), f"e{i}", error="timeout") for i in range(100)]
    extra += [pred(T0 + int(rng.integers(0, 600_000)), f"r{i}", model="other") for i in range(300)]
    stream = sorted(items + extra, key=lambda e: (e.ts_ms, isinstance(e, LabelEvent)))
    one = join(delay_ms=10 * MIN, max_pending=max_pending)
    expected = feed(one, stream) + one.flush()
    chunked = join(delay_ms=10 * MIN, max_pending=max_pending)
    got = []
    for lo in range(0, len(stream), 97):
        part = stream[lo:lo + 97]
        preds = [e for e in part if not isinstance(e, LabelEvent)]
        positions = np.array([i for i, e in enumerate(part) if not isinstance(e, LabelEvent)], dtype=np.int64)
        chunked.add_chunk(preds, positions, [(i, e) for i, e in enumerate(part) if isinstance(e, LabelEvent)])
        got += chunked.close_due()
    got += chunked.flush()
    assert got == expected and chunked.counts == one.counts
    assert min(one.counts[k] for k in ("matched", "duplicate", "expired")) > 0
    assert (one.counts["evicted"] > 0) == (max_pending == 40)


def test_segment_windows_estimates_are_averaged_by_events():
    # With window.by_segment one time window closes once per segment, each with its own estimate; the labels
    # result of the (model, version) window gets their mean weighted by the segments' events.
    from tests.factories import window

    j = join()
    j.add_prediction(pred(T0 + 1_000, "r1"))
    start = T0 - T0 % MIN
    for segment, events, est in (("en", 100, 0.8), ("fr", 300, 0.6)):
        j.window_estimate(window(start, start + MIN, segment=segment, events=events), est)
    (r,) = j.flush()
    assert r.estimated_accuracy == pytest.approx((0.8 * 100 + 0.6 * 300) / 400)


def test_idle_advances_emit_the_last_windows_labels_result():
    # Issue 21: the last window closes at one idle advance; its labels result is due at a later one, although no
    # window closes then (close_idle used to hand the labels join its restored, pre-idle clock).
    p = Pipeline(cfg(**{"labels.max_delay_seconds": 30}))
    items = [pred(T0 + i * 1000, f"r{i}") for i in range(20)] + [label(T0 + 21_000 + i, f"r{i}") for i in range(20)]
    b = p.process(records(items))
    assert b.windows == () and b.labels == ()
    first = p.close_idle(60_000)  # event time 19 s + 60 s passes the window's end + lateness
    assert len(first.windows) == 1 and first.labels == ()
    assert p.close_idle(70_000).labels == ()  # 79 s: not yet the end (60 s) + the delay (30 s)
    [r] = p.close_idle(90_000).labels  # 109 s: past 90 s, and no window closed at this advance
    assert (r.window_start_ms, r.labelled, r.partial) == (T0, 20, False)
