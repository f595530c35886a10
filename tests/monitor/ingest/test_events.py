"""Validation: one test per rejection reason, plus the accepted shapes (docs/events.md)."""

import json
import math

import pytest

from monitor.ingest.events import DEFAULT_VERSION, REASONS, InvalidEvent, decode_event, parse_ts_ms

BASE = {"ts": "2026-11-25T10:00:00Z", "model": "m", "prediction": "pos"}


def enc(obj) -> bytes:
    return json.dumps(obj).encode()


def reject(raw) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw if isinstance(raw, (bytes, str)) else enc(raw), max_text_chars=50)
    assert info.value.reason in REASONS
    return info.value


def test_minimal_event_gets_defaults():
    e = decode_event(enc(BASE))
    assert e.ts_ms == 1_795_600_800_000
    assert (e.model, e.version, e.prediction) == ("m", DEFAULT_VERSION, "pos")
    assert e.confidence is None and e.probabilities is None


def test_full_event_round_trip():
    e = decode_event(enc({**BASE, "version": "3", "probabilities": {"pos": 0.8, "neg": 0.2}, "latency_ms": 12,
                          "label": "neg", "text": "hello", "features": {"f": 1}, "request_id": "r", "variant": "b"}))
    assert e.classes == ("pos", "neg") and e.probabilities == (0.8, 0.2)
    assert e.confidence == 0.8  # max probability when confidence is absent
    assert e.latency_ms == 12.0 and e.label == "neg" and e.features == {"f": 1.0}


def test_outcome_is_an_optional_number():
    assert decode_event(enc({**BASE, "outcome": 4})).outcome == 4.0
    assert decode_event(enc({**BASE, "outcome": -0.5})).outcome == -0.5
    assert decode_event(enc(BASE)).outcome is None


def test_list_probabilities_with_classes():
    e = decode_event(enc({**BASE, "probabilities": [0.3, 0.7], "classes": ["a", "b"], "confidence": 0.7}))
    assert e.classes == ("a", "b") and e.confidence == 0.7


def test_error_event_needs_no_prediction():
    e = decode_event(enc({"ts": 1_764_000_000, "model": "m", "error": "timeout"}))
    assert e.prediction is None and e.error == "timeout"


@pytest.mark.parametrize(
    "ts, expected_ms",
    [
        (1_764_000_000, 1_764_000_000_000),  # seconds
        (1_764_000_000.25, 1_764_000_000_250),  # fractional seconds keep milliseconds
        (1_764_000_000_123, 1_764_000_000_123),  # milliseconds
        (100_000_000_000, 100_000_000_000),  # 1e11 and above: milliseconds (1973)
        ("2026-11-25T10:00:00.5+01:00", 1_795_597_200_500),
        ("2026-11-25t10:00:00z", 1_795_600_800_000),
    ],
)
def test_timestamp_forms(ts, expected_ms):
    assert parse_ts_ms(ts) == expected_ms


# -- one test per reason --------------------------------------------------------------------------------------
def test_malformed_json():
    assert reject(b'{"ts": 1, "model": ').reason == "malformed_json"
    assert reject(b"\xff\xfe{}").reason == "malformed_json"


def test_not_an_object():
    assert reject(b"[1, 2]").reason == "not_an_object"


@pytest.mark.parametrize("drop", ["ts", "model", "prediction"])
def test_missing_field(drop):
    obj = {k: v for k, v in BASE.items() if k != drop}
    assert reject(obj).reason == "missing_field"


@pytest.mark.parametrize(
    "field, value",
    [("model", ""), ("model", 3), ("latency_ms", "12"), ("latency_ms", True), ("prediction", 1), ("label", 0),
     ("text", ["a"]), ("probabilities", "0.5"), ("features", [1]), ("features", {"f": "x"}), ("ts", True),
     ("version", 2), ("confidence", "high"), ("schema", "1"), ("request_id", 5), ("outcome", "4"),
     ("outcome", True), ("variant", 1)],
)
def test_wrong_type(field, value):
    exc = reject({**BASE, field: value})
    assert exc.reason == "wrong_type"
    assert field in exc.detail  # the detail names the field ...
    assert repr(value) not in exc.detail or field == "model"  # ... never the value


@pytest.mark.parametrize("ts", ["2026-11-25T10:00:00", "2026-11-25", "yesterday", "20261125T100000Z", -5, 1e16, 99_999_999_999])
# 99_999_999_999 is below 1e11, so seconds: year 5138, outside 1970..2200
def test_bad_timestamp(ts):
    assert reject({**BASE, "ts": ts}).reason == "bad_timestamp"


def test_unsupported_schema():
    assert reject({**BASE, "schema": 2}).reason == "unsupported_schema"


@pytest.mark.parametrize("raw", [
    b'{"ts": 1764000000, "model": "m", "prediction": "p", "latency_ms": NaN}',
    b'{"ts": 1764000000, "model": "m", "prediction": "p", "confidence": Infinity}',
    b'{"ts": 1764000000, "model": "m", "prediction": "p", "latency_ms": 1e999}',
    b'{"ts": 1764000000, "model": "m", "prediction": "p", "features": {"f": -Infinity}}',
    b'{"ts": 1764000000, "model": "m", "prediction": "p", "outcome": 1e999}',
    b'{"ts": 1764000000, "model": "m", "prediction": "p", "outcome": NaN}',
])
def test_non_finite(raw):
    assert reject(raw).reason == "non_finite"


def test_negative_latency():
    assert reject({**BASE, "latency_ms": -0.1}).reason == "negative_latency"


@pytest.mark.parametrize("extra", [{"probabilities": {"a": 1.2, "b": -0.2}}, {"confidence": 1.5}])
def test_probability_out_of_range(extra):
    assert reject({**BASE, **extra}).reason == "probability_out_of_range"


def test_probabilities_not_normalised():
    assert reject({**BASE, "probabilities": {"a": 0.5, "b": 0.4}}).reason == "probabilities_not_normalised"
    # within the 0.01 tolerance is fine
    assert decode_event(enc({**BASE, "probabilities": {"a": 0.5, "b": 0.495}})).classes == ("a", "b")


@pytest.mark.parametrize("extra", [
    {"probabilities": [0.5, 0.5]},
    {"probabilities": [0.5, 0.5], "classes": ["a"]},
    {"probabilities": [0.5, 0.5], "classes": ["a", "a"]},
    {"probabilities": {}},
])
def test_classes_mismatch(extra):
    assert reject({**BASE, **extra}).reason == "classes_mismatch"


def test_text_too_long():
    exc = reject({**BASE, "text": "x" * 51})
    assert exc.reason == "text_too_long"
    assert "x" * 10 not in str(exc)  # raw text never ends up in the message


def test_rejection_keeps_stream_when_readable():
    exc = reject({**BASE, "version": "7", "latency_ms": -1})
    assert (exc.model, exc.version) == ("m", "7")


@pytest.mark.parametrize("segment, reason", [
    (3, "wrong_type"),  # a number is not coerced
    ("", "wrong_type"),  # an empty segment would be the segment-less stream's label value
    (["fr"], "wrong_type"),
    ("x" * 65, "segment_too_long"),  # one over MAX_SEGMENT_CHARS
])
def test_segment_is_validated_on_both_paths(segment, reason):
    raw = enc({**BASE, "version": "7", "segment": segment})
    assert reject(raw).reason == reason
    with pytest.raises(InvalidEvent) as info:
        _slow_decode(raw, 50)
    assert info.value.reason == reason


def test_segment_is_kept_and_named_in_rejections():
    assert decode_event(enc({**BASE, "segment": "x" * 64})).segment == "x" * 64
    assert decode_event(enc(BASE)).segment is None
    exc = reject({**BASE, "segment": "fr", "latency_ms": -1})
    assert (exc.model, exc.segment, exc.reason) == ("m", "fr", "negative_latency")


def test_every_reason_is_documented():
    doc = open("docs/events.md", encoding="utf-8").read()
    for reason in REASONS:
        assert f"`{reason}`" in doc


# -- the fast (msgspec) path and the authoritative validator agree ---------------------------------------------
from monitor.ingest.events import _slow_decode  # noqa: E402

_VALUES = [None, True, False, 0, 1, -1, 0.5, 1.5, -0.0, 1e300, 1_764_000_000, 1_764_000_000_123, "", "x", "1",
           "2026-11-25T10:00:00Z", "2026-11-25", [], [0.5, 0.5], ["a", "b"], ["a", "a"], {}, {"a": 0.4, "b": 0.6},
           {"a": 1}, {"a": "x"}, {"a": 0.5, "b": 0.5004}, {"a": 0.5, "b": 0.52}, [1], ["a"], "x" * 60]
_FIELDS = ["ts", "model", "schema", "version", "prediction", "error", "confidence", "probabilities", "classes",
           "latency_ms", "label", "text", "features", "request_id", "variant", "outcome", "segment"]


def _outcome(fn, raw):
    try:
        return fn(raw, 50)
    except InvalidEvent as exc:
        return exc.reason


def test_fast_and_slow_paths_agree_on_mutated_events():
    import random

    rnd = random.Random(7)
    good = {"ts": 1_764_000_000, "model": "m", "version": "1", "prediction": "a", "probabilities": {"a": 0.7, "b": 0.3},
            "latency_ms": 3, "text": "hi", "label": "a", "features": {"f": 1.5}}
    fast = lambda raw, n: decode_event(raw, max_text_chars=n)  # noqa: E731
    checked = 0
    for _ in range(4000):
        obj = dict(good)
        for _ in range(rnd.randint(1, 3)):
            field = rnd.choice(_FIELDS)
            if rnd.random() < 0.2:
                obj.pop(field, None)
            else:
                obj[field] = rnd.choice(_VALUES)
        raw = json.dumps(obj).encode()
        a, b = _outcome(fast, raw), _outcome(_slow_decode, raw)
        assert a == b, (obj, a, b)
        checked += 1
    assert checked == 4000


def test_lone_surrogates_are_mended_in_every_string():
    # Valid JSON that msgspec and orjson refuse: halves of surrogate pairs, as a string cut mid-emoji gives.
    raw = (b'{"ts": 1764000000000, "model": "m\\udc00x", "prediction": "p", "features": {"f\\ud800": 1.0},'
           b' "text": "bad \\ud800 text, whole pair \\ud83d\\ude00", "probabilities": {"p": 0.9, "q\\ud83d": 0.1}}')
    e = decode_event(raw)
    assert e.text == "bad \ufffd text, whole pair \U0001F600"
    assert e.model == "m\ufffdx" and e.features == {"f\ufffd": 1.0} and e.classes == ("p", "q\ufffd")
    for s in (e.text, e.model, *e.classes, *e.features):
        s.encode("utf-8")  # what SQL, Prometheus and the tokenizer need


def test_lone_surrogate_deep_in_a_nested_value_is_mended_without_recursion():
    nested = "[" * 800 + '"\\ud800"' + "]" * 800
    raw = ('{"ts": 1764000000000, "model": "m", "prediction": "p", "extra": ' + nested + "}").encode()
    assert decode_event(raw).model == "m"  # unknown fields are ignored, and mending them cannot overflow


@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_nesting_too_deep_for_any_parser_is_a_named_rejection_not_an_exception(depth):
    raw = ('{"ts": 1764000000000, "model": "m", "prediction": "p", "extra": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(InvalidEvent) as exc:
        decode_event(raw.encode())
    assert exc.value.reason == "malformed_json"


@pytest.mark.parametrize("field", ["latency_ms", "confidence", "outcome", "ts"])
def test_an_integer_too_large_for_a_float_is_a_named_rejection(field):
    raw = b'{"ts": 1764000000000, "model": "m", "prediction": "p", "%s": 1%s}' % (field.encode(), b"0" * 400)
    raw = raw.replace(b'"ts": 1764000000000, ', b"") if field == "ts" else raw
    with pytest.raises(InvalidEvent) as exc:
        decode_event(raw)
    assert exc.value.reason in ("non_finite", "bad_timestamp")


# -- the fast path's shortcuts give the general path's values ---------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_unit = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def _near_the_tolerance(draw):
    """Two probabilities whose sum is at (or one float step around) 1 +/- 0.01, or anywhere."""
    a = draw(_unit)
    edge = draw(st.sampled_from([0.99, 1.01, 1.0]))
    b = min(1.0, max(0.0, edge - a))
    for _ in range(draw(st.integers(0, 2))):
        b = math.nextafter(b, draw(st.sampled_from([0.0, 1.0])))
    return draw(st.sampled_from([(a, b), (b, a), (a, draw(_unit))]))


@settings(max_examples=400, deadline=None)
@given(_near_the_tolerance(), st.booleans())
def test_two_class_shortcut_is_the_general_sum_and_max(pair, with_confidence):
    # The binary case checks a + b and picks b if b > a; the general case math.fsum and max: same verdicts.
    a, b = pair
    obj = {**BASE, "ts": 1_764_000_000_000, "probabilities": {"x": a, "y": b}}
    if with_confidence:
        obj["confidence"] = 0.5
    raw = json.dumps(obj).encode()
    fast, slow = _outcome(lambda r, n: decode_event(r, max_text_chars=n), raw), _outcome(_slow_decode, raw)
    assert fast == slow
    normalised = abs(math.fsum((a, b)) - 1.0) <= 0.01
    assert (fast == "probabilities_not_normalised") == (not normalised)
    if normalised:
        assert fast.probabilities == (a, b) and fast.classes == ("x", "y")
        assert fast.confidence == (0.5 if with_confidence else max((a, b)))


def test_field_order_on_the_wire_does_not_matter():
    import itertools

    obj = {"ts": 1_764_000_000_000, "model": "m", "version": "2", "request_id": "r", "text": "t", "prediction": "a",
           "probabilities": {"a": 0.6, "b": 0.4}, "latency_ms": 3.5, "label": "b", "segment": "fr", "variant": "v"}
    expected = decode_event(json.dumps(obj).encode())
    keys = list(obj)
    for order in itertools.islice(itertools.permutations(keys), 0, None, 9973):  # ~4000 of the 11! orders
        assert decode_event(json.dumps({k: obj[k] for k in order}).encode()) == expected
    assert decode_event(json.dumps(dict(reversed(obj.items()))).encode()) == expected


_ONE_VALUE = {"prediction": "a", "error": "e", "confidence": 0.5, "probabilities": {"a": 1.0}, "classes": ["a"],
              "latency_ms": 0, "text": "", "features": {}, "variant": "", "outcome": 0.0, "embedding": [0.0]}


@pytest.mark.parametrize("field", sorted(_ONE_VALUE))
def test_a_label_event_with_any_prediction_field_is_refused_on_both_paths(field):
    from monitor.ingest.event_schema import PREDICTION_ONLY

    assert set(_ONE_VALUE) == set(PREDICTION_ONLY)
    label = {"kind": "label", "ts": 1_764_000_000_000, "model": "m", "request_id": "r", "label": "a"}
    raw = json.dumps({**label, field: _ONE_VALUE[field]}).encode()
    assert _outcome(lambda r, n: decode_event(r, max_text_chars=n), raw) == _outcome(_slow_decode, raw) \
        == "label_with_prediction"
    assert decode_event(json.dumps(label).encode()).label == "a"


@pytest.mark.parametrize("tolerance", [0.01, 0.001, 0.05, 0.1, 0.25, 1e-9])
def test_binary_sum_bounds_are_the_distance_to_one(tolerance):
    # decode_event's binary case compares a + b with _sum_bounds(PROB_SUM_TOLERANCE) instead of computing
    # abs(a + b - 1.0): the same verdict for every sum of two probabilities, checked float by float at the edges.
    from monitor.ingest.events import _sum_bounds

    lo, hi = _sum_bounds(tolerance)
    for edge in (lo, hi, 1.0 - tolerance, 1.0 + tolerance, 0.5, 1.0, 2.0, 0.0):
        s = edge
        for _ in range(40):
            s = math.nextafter(s, 0.0)
        for _ in range(80):
            if 0.0 <= s <= 2.0:
                assert (lo <= s <= hi) == (abs(s - 1.0) <= tolerance), (tolerance, s)
            s = math.nextafter(s, 3.0)


@pytest.mark.parametrize("embedding", [b"[]", b"[1e308, 1e308]", b"[-1e308, -1e308, 1]", b"[1e999]", b"[1, NaN]",
                                       b"[0.5, true]", b"[1" + b"0" * 308 + b", 1" + b"0" * 308 + b"]", b"[1e-320]",
                                       b'["1"]', b"{}", b"[0.25, -0.0, 3]"])
def test_fast_and_slow_paths_agree_on_embeddings(embedding):
    # msgspec refuses an empty embedding and every number out of float range; the fast path checks nothing else.
    raw = b'{"ts": 1764000000000, "model": "m", "prediction": "p", "embedding": %s, "outcome": 2}' % embedding
    fast, slow = _outcome(lambda r, n: decode_event(r, max_text_chars=n), raw), _outcome(_slow_decode, raw)
    assert fast == slow
    if not isinstance(fast, str):
        assert type(fast.embedding) is tuple and all(type(v) is float for v in fast.embedding)
        assert type(fast.outcome) is float
