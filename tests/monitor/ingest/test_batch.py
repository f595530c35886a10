"""prepare_chunk: record positions and the split by stream, whatever mix of records a batch holds."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from monitor.ingest.batch import Record, prepare_chunk
from monitor.ingest.features import base_features
from monitor.ingest.reference import FeatureSet

T0 = 1_764_000_000_000


def _record(rnd: random.Random, i: int) -> Record:
    kind = rnd.choice(["event"] * 6 + ["invalid", "future", "label", "error"])
    obj = {"ts": T0 + i, "model": rnd.choice(["a", "b"]), "version": rnd.choice(["1", "2"]), "prediction": "p",
           "probabilities": {"p": 0.7, "q": 0.3}, "text": "some words here"}
    if rnd.random() < 0.5:
        obj["segment"] = rnd.choice(["fr", "de"])
    if kind == "invalid":
        obj["latency_ms"] = -1
    elif kind == "future":
        obj["ts"] = T0 + 10**9
    elif kind == "label":
        obj = {"kind": "label", "ts": T0 + i, "model": "a", "request_id": f"r{i}", "label": "p"}
    elif kind == "error":
        obj["error"] = "timeout"
    return Record(json.dumps(obj).encode(), str(i))


def _chunk(records, by_segment):
    return prepare_chunk(records, horizon_ms=T0 + 10**6, max_text_chars=100, features=FeatureSet(),
                         tokenizer=None, profiles={}, featurize=base_features, by_segment=by_segment)


@pytest.mark.parametrize("by_segment", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_positions_and_streams_are_those_of_a_plain_loop(seed, by_segment):
    rnd = random.Random(seed)
    records = [_record(rnd, i) for i in range(200 if seed < 4 else rnd.choice([1, 5]))]
    one_model = [r for r in records if b'"model": "a"' in r.value]
    if seed % 3 == 0:  # one stream only (the shortcut), with and without rejections and labels
        records = [r for r in one_model if b'"version": "2"' not in r.value][: 50 - 40 * (seed == 3)]
    elif seed % 3 == 1:  # one model, two versions: not one stream
        records = one_model
    chunk = _chunk(records, by_segment)
    skipped = {i for i, *_ in chunk.rejected} | {i for i, _ in chunk.labels}
    assert chunk.pos.dtype == np.int64 and chunk.pos.tolist() == [i for i in range(len(records)) if i not in skipped]
    assert chunk.ts.tolist() == [e.ts_ms for e in chunk.events]
    expected: dict[tuple[str, str, str], list[int]] = {}
    for i, e in enumerate(chunk.events):
        expected.setdefault((e.model, e.version, (e.segment or "") if by_segment else ""), []).append(i)
    assert list(chunk.streams) == list(expected)
    for key, sb in chunk.streams.items():
        assert sb.idx.dtype == np.intp and sb.idx.tolist() == expected[key]
        evs = [chunk.events[i] for i in expected[key]]
        assert sb.preds == [None if e.error is not None else e.prediction for e in evs]
        assert sb.ts.tolist() == [e.ts_ms for e in evs]


def test_an_empty_batch_and_a_batch_without_events():
    assert _chunk([], False).pos.dtype == np.int64 and not _chunk([], False).streams
    bad = [Record(b"{", "0"), Record(json.dumps({"kind": "label", "ts": T0, "model": "a", "request_id": "r",
                                                  "label": "p"}).encode(), "1")]
    chunk = _chunk(bad, False)
    assert chunk.pos.tolist() == [] and chunk.pos.dtype == np.int64 and len(chunk.rejected) == len(chunk.labels) == 1


@pytest.mark.parametrize("share", [0.0, 0.05, 0.3, 1.0])
@pytest.mark.parametrize("with_probabilities", [True, False])
def test_predictions_are_none_for_failed_events_whatever_their_share(share, with_probabilities):
    # Only the unscored events are looked at again when they are few; every event when they are many.
    rnd = random.Random(int(share * 100) + with_probabilities)
    records = []
    for i in range(120):
        obj = {"ts": T0 + i, "model": "a", "prediction": rnd.choice(["p", "q"]), "text": "w"}
        if with_probabilities and rnd.random() < 0.9:
            obj["probabilities"] = {"p": 0.6, "q": 0.4}
        if rnd.random() < share:
            obj["error"] = "timeout"
            if rnd.random() < 0.5:
                del obj["prediction"]
        records.append(Record(json.dumps(obj).encode(), str(i)))
    chunk = _chunk(records, False)
    (sb,) = chunk.streams.values()
    assert sb.preds == [None if e.error is not None else e.prediction for e in chunk.events]
    assert len(sb.preds) == 120
