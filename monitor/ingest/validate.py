"""The authoritative event validator, the slow path of :func:`monitor.ingest.events.decode_event`.

Whatever the msgspec fast path refuses or finds unusual comes here: :func:`validate_event` checks a decoded
JSON object field by field and raises :class:`~monitor.ingest.event_schema.InvalidEvent` with the reason
docs/events.md names (msgspec's messages are for people; these reasons are a contract), or returns the event
when it is in fact valid. tests/monitor/ingest/test_events.py checks that both paths agree on every case.
"""

from __future__ import annotations

import json
import math
import re

import orjson

from monitor.ingest.event_schema import (
    PREDICTION_ONLY,
    PROB_SUM_TOLERANCE,
    DEFAULT_VERSION,
    MAX_SEGMENT_CHARS,
    Event,
    InvalidEvent,
    LabelEvent,
    isfinite,
    parse_ts_ms,
)

__all__ = ["validate_event", "slow_decode"]


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
    if not isfinite(value):
        raise _reject("non_finite", f"{name} is not finite", obj)
    return float(value)


def _optional_str(obj: dict, name: str) -> str | None:
    value = obj.get(name)
    if value is None or type(value) is str:
        return value
    raise _reject("wrong_type", f"{name} must be a string", obj)



def slow_decode(raw: bytes | str, max_text_chars: int) -> Event | LabelEvent:
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
    if not isfinite(latency):
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
    present = [name for name in PREDICTION_ONLY if obj.get(name) is not None]
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
        if not isfinite(v):
            raise InvalidEvent("non_finite", "a probability is not finite", model, version)
        if v < 0 or v > 1:
            raise InvalidEvent("probability_out_of_range", "a probability is outside [0, 1]", model, version)
    if abs(math.fsum(values) - 1.0) > PROB_SUM_TOLERANCE:
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
        if not isfinite(v):
            raise InvalidEvent("non_finite", f"a {field} value is not finite", model, version)
        out.append(float(v))
    return tuple(out)
