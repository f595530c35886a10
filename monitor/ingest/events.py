"""Decode prediction-log events (the contract is docs/events.md): :func:`decode_event`, the one entry.

Validation is strict: a value of the wrong type is rejected, never coerced. It is also on the hot path (every
event passes through :func:`decode_event`), so msgspec decodes and checks types in C, a few semantic checks
follow, ordered cheap-first and written without helpers that would add a Python call per field, and whatever
is unusual goes to the authoritative validator (:mod:`monitor.ingest.validate`), which names the reason. The
types (:mod:`monitor.ingest.event_schema`) are re-exported here: importers use this module.
"""

from __future__ import annotations

import math
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
    isfinite,
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
    embedding: Union[list[float], None] = None
    segment: Union[Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SEGMENT_CHARS)], None] = None
    schema: Literal[1] = 1
    kind: str = "prediction"


_decode_wire = msgspec.json.Decoder(_Wire).decode
# The wire's fields a label event must not carry, read in one C call (a generator of getattr cost ~0.5 us).
_prediction_fields = attrgetter(*PREDICTION_ONLY)


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
    version, text = w.version, w.text
    if ((w.prediction is None and w.error is None)
            or (text is not None and len(text) > max_text_chars)):
        return _slow_decode(raw, max_text_chars)
    ts = w.ts
    if type(ts) is not int or not SECONDS_LIMIT <= ts < MAX_TS_MS:
        # Epoch milliseconds, the common case, are what parse_ts_ms would return unchanged.
        try:
            ts = parse_ts_ms(ts)
        except ValueError:
            return _slow_decode(raw, max_text_chars)
    outcome = w.outcome
    if outcome is not None and not isfinite(outcome):
        return _slow_decode(raw, max_text_chars)
    embedding = w.embedding
    if embedding is not None:
        # fsum is finite exactly when every value is (it raises OverflowError only past float range).
        try:
            if not embedding or not math.isfinite(math.fsum(embedding)):
                return _slow_decode(raw, max_text_chars)
        except OverflowError:
            return _slow_decode(raw, max_text_chars)
        embedding = tuple(embedding)
    classes = probs = None
    confidence = w.confidence
    p = w.probabilities
    if p is not None:
        if type(p) is dict and len(p) == 2:
            # A binary classifier, the common case, in fewer steps than the general one below and with its
            # values: for two floats a + b is the correctly rounded exact sum, which is what fsum returns, and
            # max((a, b)) is b only when b > a. ~250 ns less an event.
            c0, c1 = p
            a, b = p.values()
            if abs(a + b - 1.0) > PROB_SUM_TOLERANCE:
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
    return Event(ts, w.model, version or DEFAULT_VERSION, w.prediction, w.error, confidence, classes, probs,
                 w.latency_ms, w.label, text, w.features, w.request_id, w.variant, outcome, embedding, w.segment)


def _label_from_wire(w: _Wire, raw: bytes | str, max_text_chars: int) -> LabelEvent:
    """The fast path of a label event; anything unusual goes to the authoritative validator."""
    if (w.kind != "label" or w.schema != 1 or w.version == "" or not w.request_id or not w.label
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


