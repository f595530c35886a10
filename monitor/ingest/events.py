"""Decode prediction-log events (the contract is docs/events.md): :func:`decode_event`, the one entry.

Validation is strict: a value of the wrong type is rejected, never coerced. It is also on the hot path (every
event passes through :func:`decode_event`), so msgspec decodes and checks types in C, a few semantic checks
follow, ordered cheap-first and written without helpers that would add a Python call per field, and whatever
is unusual goes to the authoritative validator (:mod:`monitor.ingest.validate`), which names the reason. The
types (:mod:`monitor.ingest.event_schema`) are re-exported here: importers use this module.
"""

from __future__ import annotations

import math
from fractions import Fraction
from operator import attrgetter
from typing import Annotated, Literal, Union

import msgspec

from monitor.ingest.event_schema import (
    MAX_TS_MS,
    PREDICTION_ONLY,
    PROB_SUM_TOLERANCE,
    SECONDS_LIMIT,
    DEFAULT_VERSION,
    KINDS,
    MAX_SEGMENT_CHARS,
    REASONS,
    Event,
    InvalidEvent,
    LabelEvent,
    parse_ts_ms,
)
from monitor.ingest.validate import slow_decode as _slow_decode

__all__ = ["Event", "LabelEvent", "InvalidEvent", "REASONS", "decode_event", "parse_ts_ms", "DEFAULT_VERSION",
           "KINDS", "MAX_SEGMENT_CHARS"]


_Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class _Wire(msgspec.Struct, gc=False):
    """The event's JSON shape with its types, checked by msgspec in C while decoding (the fast path).

    The fields are in the order producers write them (docs/events.md's example, the synthetic traffic):
    msgspec looks each key up starting after the field it matched last, so this order matches every key at
    the first comparison (~5% of the decode). Any order decodes the same struct.
    """

    ts: Union[str, int, float]
    model: Annotated[str, msgspec.Meta(min_length=1)]
    # An empty version and a schema other than 1 are refused here, in C, like every type: the validator then
    # names the reason.
    version: Union[Annotated[str, msgspec.Meta(min_length=1)], None] = None
    request_id: Union[str, None] = None
    text: Union[str, None] = None
    prediction: Union[str, None] = None
    # Bounds checked in C; the sum and the classes' shape are checked after decoding.
    probabilities: Union[dict[str, _Probability], list[_Probability], None] = None
    latency_ms: Union[Annotated[float, msgspec.Meta(ge=0.0)], None] = None
    error: Union[str, None] = None
    confidence: Union[Annotated[float, msgspec.Meta(ge=0.0, le=1.0)], None] = None
    classes: Union[list[str], None] = None
    label: Union[str, None] = None
    features: Union[dict[str, float], None] = None
    variant: Union[str, None] = None
    outcome: Union[float, None] = None
    # Non-empty, checked here, in C; its values are finite (see decode_event). A tuple, as Event keeps it.
    embedding: Union[Annotated[tuple[float, ...], msgspec.Meta(min_length=1)], None] = None
    segment: Union[Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SEGMENT_CHARS)], None] = None
    schema: Literal[1] = 1
    kind: str = "prediction"


_decode_wire = msgspec.json.Decoder(_Wire).decode
# The wire's fields a label event must not carry, read in one C call (a generator of getattr cost ~0.5 us).
_prediction_fields = attrgetter(*PREDICTION_ONLY)


def _sum_bounds(tolerance: float) -> tuple[float, float]:
    """The doubles s with ``abs(s - 1.0) <= tolerance``, for s in [0, 2], as bounds ``lo <= s <= hi``.

    s - 1.0 is exact for s in [0.5, 2] (Sterbenz), so the bounds are 1 - tolerance and 1 + tolerance taken
    exactly and rounded inwards to doubles (1.0 - 0.01 rounds to 0.99, whose distance to 1 is above 0.01);
    a sum below 0.5 is outside both.
    """
    t = Fraction(tolerance)
    lo, hi = 1.0 - tolerance, 1.0 + tolerance
    if Fraction(lo) < 1 - t:
        lo = math.nextafter(lo, 2.0)
    if Fraction(hi) > 1 + t:
        hi = math.nextafter(hi, 0.0)
    return lo, hi


# The binary case's sum check, abs(a + b - 1.0) <= PROB_SUM_TOLERANCE, as one chained comparison.
_SUM_LO, _SUM_HI = _sum_bounds(PROB_SUM_TOLERANCE)


def decode_event(raw: bytes | str, *, max_text_chars: int = 10_000) -> Event | LabelEvent:
    """Parse and validate one event; raise :class:`InvalidEvent` with a named reason when it is not valid.

    Two paths, one authority. msgspec decodes the bytes into a typed struct in C (types, required fields and
    simple bounds in ~1 µs); a few semantic checks follow in Python. Anything either of them refuses goes
    to :func:`validate_event`, the hand-written validator, which decides the rejection reason: msgspec's
    messages are for people, our reasons are a contract (docs/events.md). tests/monitor/ingest/test_events.py checks
    that both paths agree on every case.
    """
    try:
        w = _decode_wire(raw)
    except (msgspec.MsgspecError, RecursionError):  # msgspec raises RecursionError for very deep nesting
        return _slow_decode(raw, max_text_chars)
    if w.kind != "prediction":
        return _label_from_wire(w, raw, max_text_chars)
    text, prediction = w.text, w.prediction
    if ((prediction is None and w.error is None)
            or (text is not None and len(text) > max_text_chars)):
        return _slow_decode(raw, max_text_chars)
    ts = w.ts
    if type(ts) is not int or not SECONDS_LIMIT <= ts < MAX_TS_MS:
        # Epoch milliseconds, the common case, are what parse_ts_ms would return unchanged.
        try:
            ts = parse_ts_ms(ts)
        except ValueError:
            return _slow_decode(raw, max_text_chars)
    # No finiteness check of outcome, the features or the embedding: msgspec refuses a JSON number out of
    # float range ("Number out of range"; NaN and Infinity are not JSON), so every float it decodes is finite.
    confidence = w.confidence
    p = w.probabilities
    if p is None:
        classes = probs = None
    elif type(p) is dict and len(p) == 2:
        # A binary classifier, the common case, in fewer steps than the general one below and with its
        # values: for two floats a + b is the correctly rounded exact sum, which is what fsum returns, and
        # max((a, b)) is b only when b > a. The values by key (each key's hash is cached) rather than by
        # unpacking p.values(), the sum between the bounds of _sum_bounds rather than abs(a + b - 1.0): the
        # same values and verdict, ~60 ns less.
        c0, c1 = p
        a = p[c0]
        b = p[c1]
        if not _SUM_LO <= a + b <= _SUM_HI:
            return _slow_decode(raw, max_text_chars)
        classes, probs = (c0, c1), (a, b)
        if confidence is None:
            confidence = b if b > a else a
    else:
        if type(p) is dict:
            classes, probs = tuple(p), tuple(p.values())
        else:
            if w.classes is None or len(w.classes) != len(p) or len(set(w.classes)) != len(p):
                return _slow_decode(raw, max_text_chars)
            classes, probs = tuple(w.classes), tuple(p)
        if not probs or abs(math.fsum(probs) - 1.0) > PROB_SUM_TOLERANCE:
            return _slow_decode(raw, max_text_chars)
        if confidence is None:
            confidence = max(probs)
    # Positional: msgspec matches each keyword against the fields, which cost ~25% of this function; the
    # order is Event's field order (tests/monitor/ingest/test_events.py compares with the slow path's events).
    return Event(ts, w.model, w.version or DEFAULT_VERSION, prediction, w.error, confidence, classes, probs,
                 w.latency_ms, w.label, text, w.features, w.request_id, w.variant, w.outcome, w.embedding,
                 w.segment)


def _label_from_wire(w: _Wire, raw: bytes | str, max_text_chars: int) -> LabelEvent:
    """The fast path of a label event; anything unusual goes to the authoritative validator."""
    # schema and an empty version need no test: msgspec refused them.
    if (w.kind != "label" or not w.request_id or not w.label
            or _prediction_fields(w).count(None) != len(PREDICTION_ONLY)):
        return _slow_decode(raw, max_text_chars)
    ts = w.ts
    if type(ts) is int and SECONDS_LIMIT <= ts < MAX_TS_MS:
        ts_ms = ts
    else:
        try:
            ts_ms = parse_ts_ms(ts)
        except ValueError:
            return _slow_decode(raw, max_text_chars)
    return LabelEvent(ts_ms, w.model, w.request_id, w.label, w.version)


