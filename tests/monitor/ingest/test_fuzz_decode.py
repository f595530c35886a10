"""Property-based fuzzing of the event decoder: whatever the bytes, a valid Event or a named rejection.

Hostile inputs a producer can send: arbitrary bytes, arbitrary JSON values, and valid events mutated
(truncated, bytes flipped, types swapped, huge numbers, deep nesting, odd Unicode). The decoder must never
raise anything but :class:`InvalidEvent` with a documented reason, and an accepted event must be usable
downstream (every string encodable as UTF-8, every number finite).
"""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.ingest.events import REASONS, InvalidEvent, decode_event

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = {"ts": 1_764_000_000_000, "model": "sentiment", "version": "3", "prediction": "positive",
         "probabilities": {"positive": 0.9, "negative": 0.1}, "latency_ms": 12.5, "text": "great phone",
         "label": "positive", "request_id": "r1", "features": {"f": 1.0}}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)
odd_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=40) | st.sampled_from(
    ["\ud800", "a\udfffb", "\u0000", "\u202e", "\ufeff", "💥" * 50, "\U0010ffff", "é" * 3])


def check(raw: bytes | str) -> None:
    try:
        e = decode_event(raw)
    except InvalidEvent as exc:
        assert exc.reason in REASONS
        return
    for s in (e.model, e.version, e.prediction, e.error, e.label, e.text, e.request_id, e.variant,
              *(e.classes or ()), *(e.features or {})):
        if s is not None:
            s.encode("utf-8")
    for x in (e.confidence, e.latency_ms, e.outcome, *(e.probabilities or ()), *(e.features or {}).values()):
        assert x is None or math.isfinite(x)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw):
    check(raw)


@FUZZ
@given(json_values)
def test_arbitrary_json_values(value):
    check(json.dumps(value).encode())


@FUZZ
@given(st.sampled_from(sorted(VALID)), json_values | odd_text | st.integers(min_value=-10**40, max_value=10**40)
       | st.sampled_from([10**400, -10**400, 2**64, 2**1024]))
def test_valid_events_with_one_field_swapped(field, value):
    check(json.dumps({**VALID, field: value}).encode())


@FUZZ
@given(st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=255))
def test_valid_events_truncated_or_with_a_byte_flipped(cut, byte):
    raw = json.dumps(VALID).encode()
    check(raw[:cut])
    i = cut % len(raw)
    check(raw[:i] + bytes([byte]) + raw[i + 1:])


@FUZZ
@given(st.integers(min_value=1, max_value=100_000), st.sampled_from(["[", '{"a":']))
def test_deep_nesting(depth, opener):
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    check(('{"ts": 1764000000000, "model": "m", "prediction": "p", "x": ' + nested + "}").encode())


@FUZZ
@given(odd_text, odd_text, odd_text)
def test_odd_unicode_in_every_string(model, text, cls):
    # Built as JSON text with \\u escapes, so lone surrogates reach the decoder as producers send them.
    doc = json.dumps({"ts": 1_764_000_000_000, "model": model, "prediction": cls, "text": text,
                      "probabilities": {cls: 1.0}}, ensure_ascii=True)
    check(doc.encode())


def test_the_hostile_stream_of_the_benchmark_decodes_without_an_exception():
    from monitor.devkit.synth.hostile import hostile_records

    reasons = set()
    for raw in hostile_records(20_000, seed=7):
        try:
            decode_event(raw)
        except InvalidEvent as exc:
            reasons.add(exc.reason)
    assert {"malformed_json", "wrong_type", "non_finite", "not_an_object"} <= reasons <= set(REASONS)
