"""`PredictionLogger`: the producer half of the sidecar, for serving apps.

A serving app calls :meth:`PredictionLogger.log` once per prediction. The call builds an event
(docs/events.md), checks it with the daemon's own decoder, and appends its bytes to a bounded buffer; a
background thread hands the buffer to a kafka-python ``KafkaProducer``, keyed by model so that one model's
events stay on one partition, in order. The serving path never waits for the network and never sees an
exception: an invalid call, a full buffer and a failed send are counted (:attr:`PredictionLogger.stats`) and
logged at most once a minute, and the call goes on.

Memory is bounded: at most ``buffer_size`` events wait in the buffer and at most ``buffer_size`` more are in
the producer awaiting the broker's acknowledgement. While the broker is unreachable the buffer fills and
further events are dropped (``dropped_buffer_full``); when it comes back, what was buffered is sent.

Example::

    logger = PredictionLogger("kafka:9092", "predictions", model="sentiment", version="3")
    logger.log(prediction="positive", probabilities={"positive": 0.91, "negative": 0.09},
               latency_ms=12.5, text=request_text)
    ...
    logger.close()  # at shutdown: sends what is buffered, within a timeout

Create the logger in the process that logs: after a pre-fork server forks its workers (a logger inherited
across ``fork`` starts afresh in the child, with an empty buffer and zeroed counters).

Batches are compressed with zstd by default (``compression_type``): on generated prediction events it stores
0.25x the bytes of no compression at the same producer CPU per event within noise; gzip costs ~20% more CPU
for the same size, lz4 and snappy 0.33-0.36x the bytes (bench/compression.py, docs/benchmarks.md). zstd needs
Kafka >= 2.1 brokers; pass ``compression_type="lz4"`` for older ones, ``"none"`` to send uncompressed.
"""

from __future__ import annotations

import atexit
import collections
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from kafka import KafkaProducer
from kafka import codec as kafka_codec

from monitor.ingest.events import InvalidEvent, decode_event

__all__ = ["PredictionLogger", "LoggerStats"]

log = logging.getLogger(__name__)

# Producer settings that differ from kafka-python's defaults; ``producer_config`` overrides them.
_PRODUCER_DEFAULTS = {
    # Batch for a few milliseconds: a serving app logs many small events.
    "linger_ms": 5,
    # Fail a connection attempt or a metadata wait in seconds, not kafka-python's 30-60 s, so close() and
    # reconnection stay prompt; the logger retries by itself.
    "bootstrap_timeout_ms": 5000,
    "max_block_ms": 5000,
}
# The logger sends bytes it serialized itself; compression has its own parameter.
_RESERVED_CONFIG = ("key_serializer", "value_serializer", "bootstrap_servers", "client_id", "compression_type")
# compression_type -> the check that kafka-python has the codec's library (see pyproject.toml).
_CODECS = {"none": lambda: True, "gzip": kafka_codec.has_gzip, "snappy": kafka_codec.has_snappy,
           "lz4": kafka_codec.has_lz4, "zstd": kafka_codec.has_zstd}
DEFAULT_COMPRESSION = "zstd"  # the measurement behind it: the module docstring
_BATCH = 500  # events moved from the buffer to the producer per lock acquisition
_WARN_INTERVAL_S = 60.0
_RECONNECT_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class LoggerStats:
    """Counters of one :class:`PredictionLogger` since it was created."""

    sent: int  # acknowledged by the broker
    dropped_buffer_full: int  # not buffered: the buffer was full (broker slow or down)
    dropped_on_close: int  # logged after close(), or still buffered when close() ran out of time
    send_errors: int  # handed to the producer and failed (delivery timeout, broker error, close() timed out)
    invalid: int  # refused by validation (docs/events.md); never sent
    buffered: int  # waiting in the buffer now
    in_flight: int  # handed to the producer, not yet acknowledged


class PredictionLogger:
    """Send prediction-log events to Kafka without ever blocking or failing the caller.

    Parameters
    ----------
    bootstrap_servers
        ``"host:port"`` or a list of them.
    topic
        Topic the daemon consumes.
    model, version
        The model every event of this logger is about; ``model`` is also the message key.
    buffer_size
        Events that may wait for the producer; beyond it, events are dropped and counted.
    client_id
        Kafka client id.
    compression_type
        ``"zstd"`` (default), ``"lz4"``, ``"snappy"``, ``"gzip"`` or ``"none"``: the codec of the record
        batches. zstd needs Kafka >= 2.1; see the module docstring for the measurement behind the default.
        nlpmon consumes every one of them.
    producer_config
        Extra ``KafkaProducer`` settings (security, ``acks``, timeouts, ...).
    max_text_chars
        Longest ``text`` accepted; match the daemon's ``validation.max_text_chars``.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        topic: str,
        *,
        model: str,
        version: str | None = None,
        buffer_size: int = 10_000,
        client_id: str = "nlpmon-prediction-logger",
        producer_config: Mapping | None = None,
        max_text_chars: int = 10_000,
        compression_type: str = DEFAULT_COMPRESSION,
    ):
        if not isinstance(topic, str) or not topic:
            raise ValueError("topic must be a non-empty string")
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty string")
        if version is not None and (not isinstance(version, str) or not version):
            raise ValueError("version must be a non-empty string or None")
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            raise ValueError("buffer_size must be an integer >= 1")
        if compression_type not in _CODECS:
            raise ValueError(f"compression_type must be one of {', '.join(map(repr, _CODECS))}, got {compression_type!r}")
        if not _CODECS[compression_type]():
            # Checked here: the producer is made on the sender thread, where this would only be retried and logged.
            raise ValueError(f"compression_type {compression_type!r}: kafka-python finds no library for it "
                             "(install nlpmon's dependencies: python-snappy, lz4, zstandard)")
        self.compression_type = compression_type
        self._config = _producer_settings(bootstrap_servers, client_id, producer_config)
        self._config["compression_type"] = None if compression_type == "none" else compression_type
        self.topic = topic
        self.model = model
        self.version = version
        self.buffer_size = buffer_size
        self._key = model.encode("utf-8")
        self._max_text_chars = max_text_chars
        self._last_warning: dict[str, float] = {}
        self._reset()
        self._closed = False
        # Flush on interpreter exit when the app forgot close(); a weak reference keeps the logger collectable.
        ref = weakref.ref(self)

        def at_exit() -> None:
            obj = ref()
            if obj is not None:
                obj.close(timeout=2.0)

        def after_fork_in_child() -> None:
            obj = ref()
            if obj is not None:
                obj._reset()

        self._at_exit = at_exit
        atexit.register(at_exit)
        os.register_at_fork(after_in_child=after_fork_in_child)

    def _reset(self) -> None:
        """(Re)initialise the buffer, counters and thread state: at construction, and in a forked child."""
        self._cv = threading.Condition(threading.Lock())
        self._buffer: collections.deque[bytes] = collections.deque()
        self._in_flight = 0
        self._sent = self._dropped_full = self._dropped_close = self._send_errors = self._invalid = 0
        self._stopping = False  # close() began: accept nothing more, send what is buffered
        self._abandon = False  # close() ran out of time: stop everything now
        self._close_deadline = 0.0
        self._thread: threading.Thread | None = None

    # -- the serving path --------------------------------------------------------------------------------------

    def log(
        self,
        *,
        prediction: str | None = None,
        probabilities: Mapping[str, float] | Sequence[float] | None = None,
        confidence: float | None = None,
        latency_ms: float | None = None,
        text: str | None = None,
        label: str | None = None,
        error: str | None = None,
        request_id: str | None = None,
        variant: str | None = None,
        features: Mapping[str, float] | None = None,
        ts: int | float | str | datetime | None = None,
        classes: Sequence[str] | None = None,
        segment: str | None = None,
        embedding: Sequence[float] | None = None,
    ) -> bool:
        """Queue one prediction event; return whether it was accepted. Never raises, never blocks on I/O.

        ``ts`` is the prediction time (default: now): epoch seconds or milliseconds, an RFC 3339 string, or
        an aware ``datetime``. Numbers may be numpy scalars. ``probabilities`` is ``{class: p}``, or a list
        together with ``classes``. ``segment`` names the event's population (language, tenant), for drift per
        segment (docs/events.md). ``embedding`` is the text's embedding from the served model (a list or a 1-D
        numpy array of finite floats, the same length for every event of the model; docs/events.md).
        """
        fields = {"prediction": prediction, "error": error, "probabilities": probabilities, "classes": classes,
                  "confidence": confidence, "latency_ms": latency_ms, "label": label, "text": text,
                  "features": features, "request_id": request_id, "variant": variant, "segment": segment,
                  "embedding": embedding}  # in the order the event's JSON writes them
        try:
            event = {"schema": 1, "ts": _ts_value(ts), "model": self.model}
            if self.version is not None:
                event["version"] = self.version
            value = _encode_event(event, fields, self._max_text_chars)
        except InvalidEvent as exc:
            return self._refuse(exc.reason, exc.detail)
        except Exception as exc:  # an argument orjson cannot serialize, or anything unforeseen
            return self._refuse("wrong_type", type(exc).__name__)
        with self._cv:
            if self._stopping or self._closed:
                self._dropped_close += 1
                return False
            if len(self._buffer) < self.buffer_size:
                if self._thread is None:
                    self._start()
                self._buffer.append(value)
                self._cv.notify()
                return True
            self._dropped_full += 1
        self._warn("buffer_full", "prediction log buffer is full (%d events); dropping events", self.buffer_size)
        return False

    def _refuse(self, reason: str, detail: str) -> bool:
        with self._cv:
            self._invalid += 1
        self._warn(f"invalid:{reason}", "prediction event refused (%s: %s); not sent", reason, detail)
        return False

    def _warn(self, kind: str, message: str, *args) -> None:
        # Unlocked on purpose: a rare duplicate warning is cheaper than a lock on every refusal.
        now = time.monotonic()
        if now - self._last_warning.get(kind, -_WARN_INTERVAL_S) >= _WARN_INTERVAL_S:
            self._last_warning[kind] = now
            log.warning(message, *args)

    # -- stats, flush, close -----------------------------------------------------------------------------------

    @property
    def stats(self) -> LoggerStats:
        with self._cv:
            return LoggerStats(
                sent=self._sent, dropped_buffer_full=self._dropped_full, dropped_on_close=self._dropped_close,
                send_errors=self._send_errors, invalid=self._invalid, buffered=len(self._buffer),
                in_flight=self._in_flight,
            )

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` seconds until every accepted event is acknowledged or failed.

        Returns whether nothing is left pending. Never raises.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cv:
            return self._cv.wait_for(
                lambda: not self._buffer and not self._in_flight, timeout=max(0.0, deadline - time.monotonic())
            )

    def close(self, timeout: float = 10.0) -> bool:
        """Stop accepting events, send what is buffered, and release the producer, within ``timeout`` seconds.

        Returns whether every event :meth:`log` accepted was acknowledged by the broker: nothing failed,
        nothing was left behind (anything still buffered at the deadline is counted in ``dropped_on_close``,
        anything the producer still held in ``send_errors``). Idempotent; never raises.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cv:
            first = not self._closed
            self._closed = self._stopping = True
            if first:
                self._close_deadline = deadline
            thread = self._thread
            self._cv.notify_all()
        if first:
            atexit.unregister(self._at_exit)
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cv:
            if self._buffer or self._in_flight or (thread is not None and thread.is_alive()):
                # Out of time (broker down or slow): give up on what is left, and let the thread wind down.
                self._abandon = True
                self._dropped_close += len(self._buffer)
                self._buffer.clear()
                self._cv.notify_all()
            return not (self._abandon or self._in_flight or self._send_errors or self._dropped_close)

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- the sender thread -------------------------------------------------------------------------------------

    def _start(self) -> None:
        # Called with self._cv held, on the first log() (of this process, after a fork).
        self._thread = threading.Thread(target=self._run, name=f"nlpmon-logger-{self.topic}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        producer = None
        try:
            while True:
                with self._cv:
                    self._cv.wait_for(lambda: self._buffer or self._stopping)
                    if self._abandon or not self._buffer:
                        return  # close() began and everything buffered was handed over
                if producer is None:
                    producer = self._connect()
                    if producer is None:
                        return
                with self._cv:
                    self._cv.wait_for(lambda: self._in_flight < self.buffer_size or self._abandon, timeout=1.0)
                    if self._abandon:
                        return
                    n = min(len(self._buffer), self.buffer_size - self._in_flight, _BATCH)
                    batch = [self._buffer.popleft() for _ in range(n)]
                    self._in_flight += n
                for value in batch:
                    try:
                        future = producer.send(self.topic, value=value, key=self._key)
                    except Exception as exc:  # metadata timeout, producer closed, message too large
                        self._on_error(exc)
                        continue
                    future.add_callback(self._on_sent)
                    future.add_errback(self._on_error)
        except Exception:  # a bug here must not take the app down; events stay counted as in flight
            log.exception("prediction logger thread failed")
        finally:
            if producer is not None:
                remaining = max(0.0, self._close_deadline - time.monotonic()) if self._stopping else 0.0
                _close_producer(producer, remaining)

    def _connect(self) -> KafkaProducer | None:
        backoff = 0.1
        while True:
            try:
                return KafkaProducer(**self._config)
            except Exception as exc:  # broker unreachable (KafkaTimeoutError), DNS, TLS, bad settings
                self._warn("connect", "prediction logger cannot reach Kafka (%s: %s); retrying",
                           type(exc).__name__, exc)
            with self._cv:
                if self._cv.wait_for(lambda: self._abandon, timeout=backoff):
                    return None
            backoff = min(backoff * 2, _RECONNECT_MAX_S)

    def _on_sent(self, _metadata) -> None:
        with self._cv:
            self._sent += 1
            self._in_flight -= 1
            self._cv.notify_all()

    def _on_error(self, exc: BaseException) -> None:
        with self._cv:
            self._send_errors += 1
            self._in_flight -= 1
            self._cv.notify_all()
        self._warn("send", "prediction log event not delivered (%s: %s)", type(exc).__name__, exc)


def _number(value: object, field: str) -> object:
    """Return ``value`` as a JSON number when it is one (numpy scalars included); otherwise unchanged.

    An unchanged non-number (a string, a bool) is then refused by validation with the field's name. NaN and
    infinities are refused here: orjson would write them as ``null``, silently turning them into "absent".
    """
    t = type(value)
    if t is int or t is bool or t is str:
        return value
    if t is not float:
        try:
            value = float(value)  # numpy.float32, Decimal, ...
        except (TypeError, ValueError):
            return value
    if not math.isfinite(value):
        raise InvalidEvent("non_finite", f"{field} is not finite")
    return value


def _ts_value(ts: object) -> object:
    if ts is None:
        return time.time_ns() // 1_000_000
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise InvalidEvent("bad_timestamp", "ts must be a timezone-aware datetime")
        return int(round(ts.timestamp() * 1000))
    return _number(ts, "ts")


def _producer_settings(bootstrap_servers, client_id: str, producer_config: Mapping | None) -> dict:
    extra = dict(producer_config or {})
    reserved = sorted(k for k in extra if k in _RESERVED_CONFIG)
    if reserved:
        raise ValueError(f"producer_config must not set {', '.join(reserved)} (the logger sets them; "
                         "compression has its own parameter, compression_type)")
    unknown = sorted(k for k in extra if k not in KafkaProducer.DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown KafkaProducer settings in producer_config: {', '.join(unknown)}")
    return {**_PRODUCER_DEFAULTS, **extra, "bootstrap_servers": bootstrap_servers, "client_id": client_id}


def _close_producer(producer: KafkaProducer, timeout: float) -> None:
    try:
        producer.close(timeout=timeout)
    except Exception:
        # kafka-python's close() flushes first and raises KafkaTimeoutError while batches are pending,
        # before it force-closes its sender thread, which would then outlive us: force it here.
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            try:
                sender.force_close()
            except Exception:
                log.debug("could not force-close the Kafka producer", exc_info=True)


def _encode_event(event: dict, fields: Mapping[str, object], max_text_chars: int) -> bytes:
    """``event`` (schema, ts, model, version) with the ``log()`` fields that are set, as the JSON bytes to send.

    Numbers are converted as :func:`_number` does; the daemon's own decoder then checks the result, so whatever
    passes here, the daemon accepts (it raises :class:`InvalidEvent` otherwise).
    """
    for name, value in fields.items():
        if value is not None:
            convert = _CONVERT.get(name)
            event[name] = value if convert is None else convert(value, name)
    value = orjson.dumps(event)
    decode_event(value, max_text_chars=max_text_chars)
    return value


def _probabilities(value, field: str):
    if isinstance(value, Mapping):
        return {k: _number(v, field) for k, v in value.items()}
    return [_number(v, field) for v in value]


def _features(value, field: str):
    return {k: _number(v, field) for k, v in value.items()} if isinstance(value, Mapping) else value


# How a log() field becomes JSON; the others are written as given.
_CONVERT = {
    "probabilities": _probabilities,
    "classes": lambda value, _field: list(value),
    "confidence": _number,
    "latency_ms": _number,
    "features": _features,
    "embedding": lambda value, field: [_number(v, field) for v in value],
}
