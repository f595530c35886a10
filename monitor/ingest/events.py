"""Decode and validate prediction-log events (the contract is docs/events.md).

Validation is strict: a value of the wrong type is rejected, never coerced. It is also on the hot path (every
event passes through :func:`decode_event`), so checks are ordered cheap-first and written without helpers
that would add a Python call per field.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from operator import attrgetter
from typing import Annotated, Literal, Union

import msgspec
import orjson

__all__ = ["Event", "LabelEvent", "InvalidEvent", "REASONS", "decode_event", "parse_ts_ms", "DEFAULT_VERSION",
           "KINDS", "MAX_SEGMENT_CHARS"]

DEFAULT_VERSION = "unversioned"

# Every rejection reason, in the order docs/events.md lists them. Metrics pre-create one series per reason
# so a dashboard shows 0 rather than "no data" for reasons that never happened.
REASONS = (
    "malformed_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "bad_timestamp",
    "unsupported_schema",
    "non_finite",
    "negative_latency",
    "probability_out_of_range",
    "probabilities_not_normalised",
    "classes_mismatch",
    "text_too_long",
    "segment_too_long",
    "unknown_kind",
    "label_with_prediction",
)

# The values of an event's ``kind`` (docs/events.md, *Label events*); absent means "prediction".
KINDS = ("prediction", "label")
# What a label event must not carry: it is the true class of a prediction logged before, not a prediction.
_PREDICTION_ONLY = ("prediction", "error", "confidence", "probabilities", "classes", "latency_ms", "text",
                    "features", "variant", "outcome", "embedding")

# A segment is a label value (Prometheus, SQL key, Grafana variable): short, like a language or tenant code.
MAX_SEGMENT_CHARS = 64

# Numbers below this are epoch seconds, at or above it epoch milliseconds (docs/events.md explains why).
_SECONDS_LIMIT = 100_000_000_000
_MIN_TS_MS = 0
_MAX_TS_MS = 7_258_118_400_000  # 2200-01-01T00:00:00Z
_PROB_SUM_TOLERANCE = 0.01



def _isfinite(x: float | int) -> bool:
    """``math.isfinite`` that calls an integer too large for a float (``1`` followed by 400 zeros) not finite.

    JSON integers have no size limit; math.isfinite raises OverflowError on them, which would make one
    record an exception instead of a ``non_finite`` rejection.
    """
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


class InvalidEvent(Exception):
    """An event that fails validation; ``reason`` is one of :data:`REASONS`.

    ``detail`` names fields, never values, so it is safe to log. ``model``/``version`` (and ``segment``) are
    set when they could be read, so the rejection can be attributed to a stream.
    """

    __slots__ = ("reason", "detail", "model", "version", "segment")

    def __init__(self, reason: str, detail: str, model: str | None = None, version: str | None = None, *,
                 segment: str | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.model = model
        self.version = version
        self.segment = segment


class LabelEvent(msgspec.Struct, frozen=True, gc=False):
    """One validated label event (``kind: "label"``): the true class of the prediction with ``request_id``.

    ``version`` is ``None`` when the producer did not send it: the label joins its prediction by (model,
    request_id), and the prediction's version is the one its result carries (docs/events.md).
    """

    ts_ms: int
    model: str
    request_id: str
    label: str
    version: str | None = None


class Event(msgspec.Struct, frozen=True, gc=False):
    """One validated prediction-log event (frozen)."""

    ts_ms: int
    model: str
    version: str
    prediction: str | None
    error: str | None = None
    confidence: float | None = None
    # Class probabilities as parallel tuples, so entropy can be computed without re-reading a dict.
    classes: tuple[str, ...] | None = None
    probabilities: tuple[float, ...] | None = None
    latency_ms: float | None = None
    label: str | None = None
    text: str | None = None
    features: dict[str, float] | None = None
    request_id: str | None = None
    variant: str | None = None
    # A numeric outcome of the prediction (user satisfaction, revenue), for experiments (docs/experiments.md).
    outcome: float | None = None
    # A precomputed embedding of the text (finite floats; its length is checked against the stream's
    # reference profile by the pipeline, docs/events.md).
    embedding: tuple[float, ...] | None = None
    # The population the event belongs to (language, tenant, channel): with window.by_segment, streams are
    # (model, version, segment) (docs/events.md).
    segment: str | None = None


def parse_ts_ms(value: object) -> int:
    """Return epoch milliseconds for an RFC 3339 string or an epoch-seconds/milliseconds number.

    Raises ``ValueError`` (with a message naming no value) when the timestamp is not acceptable.
    """
    if type(value) is int or type(value) is float:
        if not _isfinite(value):
            raise ValueError("ts is not finite")
        ms = value * 1000 if abs(value) < _SECONDS_LIMIT else value
        ms = int(round(ms))
    elif type(value) is str:
        try:
            # RFC 3339 allows lower-case "t" and "z"; fromisoformat does not.
            dt = datetime.fromisoformat(value.upper() if "z" in value or "t" in value else value)
        except ValueError:
            raise ValueError("ts is not an RFC 3339 timestamp") from None
        # RFC 3339 requires an offset; a naive time would silently be read as the daemon's local time.
        if dt.tzinfo is None or len(value) < 11 or value[10] not in "Tt ":
            raise ValueError("ts must be RFC 3339 with a date, time and timezone")
        ms = int(round(dt.timestamp() * 1000))
    else:
        raise ValueError("ts must be a string or a number")
    if not _MIN_TS_MS <= ms < _MAX_TS_MS:
        raise ValueError("ts is outside 1970..2200")
    return ms


def _stream_of(obj: dict) -> tuple[str | None, str | None]:
    model = obj.get("model")
    version = obj.get("version", DEFAULT_VERSION)
    if type(model) is not str or not model:
        return None, None
    if type(version) is not str or not version:
        return model, None
    return model, version


def _reject(reason: str, detail: str, obj: dict | None = None) -> InvalidEvent:
    if obj is None:
        return InvalidEvent(reason, detail)
    model, version = _stream_of(obj)
    return InvalidEvent(reason, detail, model, version)


def _number(obj: dict, name: str) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    t = type(value)
    if t is not float and t is not int:
        raise _reject("wrong_type", f"{name} must be a number", obj)
    if not _isfinite(value):
        raise _reject("non_finite", f"{name} is not finite", obj)
    return float(value)


def _optional_str(obj: dict, name: str) -> str | None:
    value = obj.get(name)
    if value is None or type(value) is str:
        return value
    raise _reject("wrong_type", f"{name} must be a string", obj)


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
_prediction_fields = attrgetter(*_PREDICTION_ONLY)


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
    if type(ts) is not int or not _SECONDS_LIMIT <= ts < _MAX_TS_MS:
        # Epoch milliseconds, the common case, are what parse_ts_ms would return unchanged.
        try:
            ts = parse_ts_ms(ts)
        except ValueError:
            return _slow_decode(raw, max_text_chars)
    outcome = w.outcome
    if outcome is not None and not _isfinite(outcome):
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
            if abs(a + b - 1.0) > _PROB_SUM_TOLERANCE:
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
            if not probs or abs(math.fsum(probs) - 1.0) > _PROB_SUM_TOLERANCE:
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
            or _prediction_fields(w).count(None) != len(_PREDICTION_ONLY)):
        return _slow_decode(raw, max_text_chars)
    ts = w.ts
    if type(ts) is int and _SECONDS_LIMIT <= ts < _MAX_TS_MS:
        ts_ms = ts
    else:
        try:
            ts_ms = parse_ts_ms(ts)
        except ValueError:
            return _slow_decode(raw, max_text_chars)
    return LabelEvent(ts_ms, w.model, w.request_id, w.label, w.version)


def _slow_decode(raw: bytes | str, max_text_chars: int) -> Event | LabelEvent:
    """The authoritative validator: raises the named reason (and returns the event if it is in fact valid)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        obj = _lenient_loads(raw)
    if type(obj) is not dict:
        raise InvalidEvent("not_an_object", "an event must be a JSON object")
    try:
        return validate_event(obj, max_text_chars=max_text_chars)
    except InvalidEvent as exc:
        # The segment too, when it is valid, so that with window.by_segment the rejection counts in its stream.
        segment = obj.get("segment")
        if type(segment) is str and 0 < len(segment) <= MAX_SEGMENT_CHARS:
            exc.segment = segment
        raise


def _lenient_loads(raw: bytes | str) -> object:
    """Second chance for what orjson refuses: NaN/Infinity literals and overflowing numbers.

    Such a document is still rejected, but as ``non_finite`` naming the field, which tells the producer what
    to fix; anything the standard library refuses too is ``malformed_json``. Only the error path pays for it.
    """
    try:
        text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
        return _replace_lone_surrogates(json.loads(text))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidEvent("malformed_json", "not valid UTF-8 JSON") from None


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_lone_surrogates(obj: object) -> object:
    """Replace each lone UTF-16 surrogate (``"\\ud800"`` escapes) in every string of ``obj`` with U+FFFD.

    Valid JSON may escape half of a surrogate pair: what Java or JavaScript write when they cut a string in
    the middle of an emoji. Such a string cannot be encoded (UTF-8 for SQL and Prometheus, UTF-32 for the
    text features, the tokenizer's Rust strings), so it is mended here, once, the way a UTF-8 decoder mends
    the bytes of a cut string; the event stays valid (docs/events.md). msgspec and orjson refuse these
    documents, so only the slow path pays. Iterative: nesting depth is whatever json.loads accepted.
    """
    def fix(v):
        return _LONE_SURROGATE.sub("\ufffd", v) if type(v) is str and not v.isascii() else v

    obj = fix(obj)
    stack = [obj]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            items = list(node.items())
            if any(type(k) is str and not k.isascii() for k, _ in items):
                node.clear()
                node.update((fix(k), v) for k, v in items)
            for k, v in node.items():
                if type(v) is str:
                    node[k] = fix(v)
                elif type(v) in (dict, list):
                    stack.append(v)
        elif type(node) is list:
            for i, v in enumerate(node):
                if type(v) is str:
                    node[i] = fix(v)
                elif type(v) in (dict, list):
                    stack.append(v)
    return obj


def validate_event(obj: dict, *, max_text_chars: int = 10_000) -> Event | LabelEvent:
    """Validate an already-decoded JSON object (see :func:`decode_event`)."""
    get = obj.get
    schema = get("schema", 1)
    if schema != 1 or type(schema) is not int:
        if type(schema) is not int:
            raise _reject("wrong_type", "schema must be an integer", obj)
        raise _reject("unsupported_schema", "only schema 1 is supported", obj)
    kind = get("kind", "prediction")
    if kind != "prediction":
        if type(kind) is not str:
            raise _reject("wrong_type", "kind must be a string", obj)
        if kind != "label":
            raise _reject("unknown_kind", "kind must be \"prediction\" or \"label\"", obj)
        return _validate_label(obj)

    model, version = _stream(obj)
    version = version or DEFAULT_VERSION
    ts_ms = _timestamp(get("ts"), model, version)
    error = get("error")
    if error is not None and type(error) is not str:
        raise InvalidEvent("wrong_type", "error must be a string", model, version)
    prediction = get("prediction")
    if prediction is None:
        if error is None:
            raise InvalidEvent("missing_field", "prediction is required unless error is set", model, version)
    elif type(prediction) is not str:
        raise InvalidEvent("wrong_type", "prediction must be a string", model, version)
    latency = get("latency_ms")
    if latency is not None:
        latency = _latency(latency, model, version)

    classes = probs = None
    raw_probs = get("probabilities")
    if raw_probs is not None:
        classes, probs = _probabilities(obj, raw_probs, model, version)
    confidence = _number(obj, "confidence")
    if confidence is not None:
        if not 0.0 <= confidence <= 1.0:
            raise InvalidEvent("probability_out_of_range", "confidence is outside [0, 1]", model, version)
    elif probs:
        confidence = max(probs)

    text = get("text")
    if text is not None:
        if type(text) is not str:
            raise InvalidEvent("wrong_type", "text must be a string", model, version)
        if len(text) > max_text_chars:
            raise InvalidEvent("text_too_long", f"text is longer than {max_text_chars} characters", model, version)
    features = get("features")
    if features is not None:
        features = _features(features, model, version)
    label = get("label")
    if label is not None and type(label) is not str:
        raise InvalidEvent("wrong_type", "label must be a string", model, version)
    embedding = get("embedding")
    if embedding is not None:
        embedding = _embedding(embedding, model, version)
    segment = get("segment")
    if segment is not None:
        _check_segment(segment, model, version)

    return Event(
        ts_ms=ts_ms, model=model, version=version, prediction=prediction, error=error, confidence=confidence,
        classes=classes, probabilities=probs, latency_ms=latency, label=label, text=text, features=features,
        request_id=_optional_str(obj, "request_id"), variant=_optional_str(obj, "variant"),
        outcome=_number(obj, "outcome"), embedding=embedding, segment=segment,
    )  # fmt: skip


def _stream(obj: dict) -> tuple[str, str | None]:
    """The event's ``model`` and ``version`` (None when absent), validated: what a rejection is counted under."""
    model = obj.get("model")
    if model is None:
        raise InvalidEvent("missing_field", "model is required")
    if type(model) is not str or not model:
        raise InvalidEvent("wrong_type", "model must be a non-empty string")
    version = obj.get("version")
    if version is not None and (type(version) is not str or not version):
        raise InvalidEvent("wrong_type", "version must be a non-empty string", model)
    return model, version


def _timestamp(ts: object, model: str, version: str) -> int:
    """``ts`` (RFC 3339 string or epoch number) in epoch milliseconds, or the named rejection."""
    if ts is None:
        raise InvalidEvent("missing_field", "ts is required", model, version)
    if type(ts) is bool:
        raise InvalidEvent("wrong_type", "ts must be a string or a number", model, version)
    try:
        return parse_ts_ms(ts)
    except ValueError as exc:
        reason = "wrong_type" if type(ts) not in (str, int, float) else "bad_timestamp"
        raise InvalidEvent(reason, str(exc), model, version) from None


def _latency(latency: object, model: str, version: str) -> float:
    t = type(latency)
    if t is not float and t is not int:
        raise InvalidEvent("wrong_type", "latency_ms must be a number", model, version)
    if not _isfinite(latency):
        raise InvalidEvent("non_finite", "latency_ms is not finite", model, version)
    if latency < 0:
        raise InvalidEvent("negative_latency", "latency_ms is negative", model, version)
    return float(latency)


def _check_segment(segment: object, model: str, version: str) -> None:
    if type(segment) is not str or not segment:
        raise InvalidEvent("wrong_type", "segment must be a non-empty string", model, version)
    if len(segment) > MAX_SEGMENT_CHARS:
        raise InvalidEvent("segment_too_long", f"segment is longer than {MAX_SEGMENT_CHARS} characters", model, version)


def _validate_label(obj: dict) -> LabelEvent:
    """Validate a ``kind: "label"`` object: ts, model, request_id and label, nothing of a prediction."""
    model, version = _stream(obj)
    stream = (model, version or DEFAULT_VERSION)
    ts_ms = _timestamp(obj.get("ts"), *stream)
    for name in ("request_id", "label"):
        value = obj.get(name)
        if value is None:
            raise InvalidEvent("missing_field", f"{name} is required in a label event", *stream)
        if type(value) is not str or not value:
            raise InvalidEvent("wrong_type", f"{name} must be a non-empty string", *stream)
    present = [name for name in _PREDICTION_ONLY if obj.get(name) is not None]
    if present:
        raise InvalidEvent("label_with_prediction", f"a label event carries no {present[0]}", *stream)
    return LabelEvent(ts_ms, model, obj["request_id"], obj["label"], version)


def _probabilities(obj: dict, raw: object, model: str, version: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    if type(raw) is dict:
        classes = tuple(raw)
        values = tuple(raw.values())
    elif type(raw) is list:
        names = obj.get("classes")
        if type(names) is not list or len(names) != len(raw):
            raise InvalidEvent("classes_mismatch", "list probabilities need classes of the same length", model, version)
        if any(type(c) is not str for c in names):
            raise InvalidEvent("wrong_type", "classes must be strings", model, version)
        classes = tuple(names)
        if len(set(classes)) != len(classes):
            raise InvalidEvent("classes_mismatch", "classes has duplicate names", model, version)
        values = tuple(raw)
    else:
        raise InvalidEvent("wrong_type", "probabilities must be an object or a list", model, version)
    if not values:
        raise InvalidEvent("classes_mismatch", "probabilities is empty", model, version)
    for v in values:
        t = type(v)
        if t is not float and t is not int:
            raise InvalidEvent("wrong_type", "probabilities must be numbers", model, version)
        if not _isfinite(v):
            raise InvalidEvent("non_finite", "a probability is not finite", model, version)
        if v < 0 or v > 1:
            raise InvalidEvent("probability_out_of_range", "a probability is outside [0, 1]", model, version)
    if abs(math.fsum(values) - 1.0) > _PROB_SUM_TOLERANCE:
        raise InvalidEvent("probabilities_not_normalised", "probabilities do not sum to 1 +/- 0.01", model, version)
    return classes, tuple(float(v) for v in values)


def _features(raw: object, model: str, version: str) -> dict[str, float]:
    if type(raw) is not dict:
        raise InvalidEvent("wrong_type", "features must be an object of numbers", model, version)
    return dict(zip(raw, _finite_numbers(raw.values(), "features", model, version)))


def _embedding(raw: object, model: str, version: str) -> tuple[float, ...]:
    if type(raw) is not list or not raw:
        raise InvalidEvent("wrong_type", "embedding must be a non-empty list of numbers", model, version)
    return _finite_numbers(raw, "embedding", model, version)


def _finite_numbers(values, field: str, model: str, version: str) -> tuple[float, ...]:
    """The values as floats; ``wrong_type`` for a non-number (bool included), ``non_finite`` for NaN/inf."""
    out = []
    for v in values:
        t = type(v)
        if t is not float and t is not int:
            raise InvalidEvent("wrong_type", f"{field} values must be numbers", model, version)
        if not _isfinite(v):
            raise InvalidEvent("non_finite", f"a {field} value is not finite", model, version)
        out.append(float(v))
    return tuple(out)
