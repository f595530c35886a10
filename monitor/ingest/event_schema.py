"""The prediction-log event's types and vocabulary (the contract is docs/events.md): the validated
:class:`Event` and :class:`LabelEvent`, :class:`InvalidEvent` with its named reasons, and the timestamp rule.

No decoding here: :mod:`monitor.ingest.events` decodes (its msgspec fast path), :mod:`monitor.ingest.validate`
is the authority that names a rejection's reason. Both build these types; importers use ``events``, which
re-exports them.
"""

from __future__ import annotations

import math
from datetime import datetime

import msgspec

__all__ = ["Event", "LabelEvent", "InvalidEvent", "REASONS", "parse_ts_ms", "DEFAULT_VERSION", "KINDS",
           "MAX_SEGMENT_CHARS", "PREDICTION_ONLY", "SECONDS_LIMIT", "MIN_TS_MS", "MAX_TS_MS", "PROB_SUM_TOLERANCE",
           "isfinite"]


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
PREDICTION_ONLY = ("prediction", "error", "confidence", "probabilities", "classes", "latency_ms", "text",
                    "features", "variant", "outcome", "embedding")

# A segment is a label value (Prometheus, SQL key, Grafana variable): short, like a language or tenant code.
MAX_SEGMENT_CHARS = 64

# Numbers below this are epoch seconds, at or above it epoch milliseconds (docs/events.md explains why).
SECONDS_LIMIT = 100_000_000_000
MIN_TS_MS = 0
MAX_TS_MS = 7_258_118_400_000  # 2200-01-01T00:00:00Z
PROB_SUM_TOLERANCE = 0.01



def isfinite(x: float | int) -> bool:
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
        if not isfinite(value):
            raise ValueError("ts is not finite")
        ms = value * 1000 if abs(value) < SECONDS_LIMIT else value
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
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise ValueError("ts is outside 1970..2200")
    return ms


