"""Fetch-level errors: a record batch the consumer cannot read (codec, CRC, decompression, size).

``KafkaConsumer.poll`` raises such an error every time it meets the batch, and the consumer's position stays
before it, so a daemon that exits on it crash-loops on restart. Instead the daemon keeps the partition at
that offset (nothing is skipped), pauses it, retries with exponential backoff, and says so on ``/readyz``,
in ``nlpmon_fetch_errors_total{reason}`` and in ONE log line per fault (docs/kafka.md, "Fetch errors").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kafka.consumer.fetcher import RecordTooLargeError
from kafka.errors import CorruptRecordError, UnsupportedCodecError

__all__ = ["FETCH_ERROR_REASONS", "FetchFault", "FetchFaults", "fetch_error_reason", "release_failed_fetch"]

# The values of the ``reason`` label of nlpmon_fetch_errors_total (bounded: nothing else is ever exported).
FETCH_ERROR_REASONS = ("unsupported_codec", "corrupt_record", "decompression_failed", "record_too_large")


def fetch_error_reason(exc: BaseException) -> str | None:
    """The reason label of a fetch-level error raised by ``poll``; None for anything else (which stays fatal)."""
    if isinstance(exc, UnsupportedCodecError):
        return "unsupported_codec"  # a codec whose library is not installed
    if isinstance(exc, CorruptRecordError):
        return "corrupt_record"  # CRC mismatch, found by the consumer or reported by the broker
    if isinstance(exc, RecordTooLargeError):
        return "record_too_large"
    # A codec library's own error (zlib.error, cramjam's DecompressionError, lz4's RuntimeError, ZstdError,
    # struct.error on a truncated batch...): no common base class, so recognise it by where it was raised.
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module == "kafka.codec" or module.startswith("kafka.record."):
            return "decompression_failed"
        tb = tb.tb_next
    return None


def release_failed_fetch(consumer: Any) -> tuple[Any, int] | None:
    """Drop the records the consumer buffered for the failed batch; return (TopicPartition, offset) when known.

    kafka-python 3.0 (checked with 3.0.12) keeps the failed partition's exhausted record iterator after
    ``poll`` raises, and the next ``poll`` then spins on it forever without returning. Draining it makes the
    next fetch of that partition read the batch again from the broker: that is the retry. The offset is that
    of the first record not yet returned, i.e. where the partition waits. None when the error came from a
    fetch response before any record was buffered (the partition is then not known).
    """
    fetcher = getattr(consumer, "_fetcher", None)
    part = getattr(fetcher, "_next_partition_records", None)
    if not part:  # None, or already drained (falsy): the error did not come from its records
        return None
    failed = (part.topic_partition, part.next_fetch_offset)
    part.drain()
    fetcher._next_partition_records = None
    return failed


@dataclass
class FetchFault:
    """One partition (or, with ``key`` None, an unknown one) that cannot be read past ``offset``."""

    reason: str
    offset: int | None
    error: str
    failures: int = 0
    delay_s: float = 0.0
    retry_at: float = 0.0
    retrying: bool = False  # the backoff is over and the partition was resumed; waiting for the next fetch


class FetchFaults:
    """Per-partition fault state and exponential backoff (``initial_s`` doubling up to ``max_s``)."""

    def __init__(self, *, initial_s: float = 0.5, max_s: float = 30.0):
        if not 0 < initial_s <= max_s:
            raise ValueError(f"backoff must satisfy 0 < initial_s <= max_s, got {initial_s} and {max_s}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.faults: dict[Any, FetchFault] = {}

    def record(self, key: Any, reason: str, offset: int | None, error: str, *, now: float) -> tuple[FetchFault, bool]:
        """Count one failed fetch; return the fault and whether it is new or changed (the caller logs then)."""
        fault = self.faults.get(key)
        changed = fault is None or fault.reason != reason or fault.offset != offset
        if changed:
            fault = self.faults[key] = FetchFault(reason=reason, offset=offset, error=error[:300])
        fault.failures += 1
        fault.delay_s = self.initial_s if fault.failures == 1 else min(fault.delay_s * 2, self.max_s)
        fault.retry_at = now + fault.delay_s
        fault.retrying = False
        return fault, changed

    def due(self, now: float) -> list[Any]:
        """Keys whose backoff is over and that have not been retried yet; marks them as retrying."""
        keys = [k for k, f in self.faults.items() if not f.retrying and now >= f.retry_at]
        for k in keys:
            self.faults[k].retrying = True
        return keys

    def waiting(self, key: Any) -> bool:
        """Whether ``key`` is inside its backoff (must stay paused)."""
        f = self.faults.get(key)
        return f is not None and not f.retrying

    def clear(self, key: Any) -> FetchFault | None:
        return self.faults.pop(key, None)

    def __bool__(self) -> bool:
        return bool(self.faults)

    def checks(self, name) -> dict[str, dict]:
        """The faults for /readyz, keyed by ``name(key)`` (e.g. ``topic/partition``)."""
        return {name(k): {"reason": f.reason, "offset": f.offset, "failures": f.failures, "error": f.error}
                for k, f in self.faults.items()}
