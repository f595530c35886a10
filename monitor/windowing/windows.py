"""Window arithmetic: pure functions with units in their names, and the per-stream window bookkeeping.

Time windows are tumbling, ``[start, start + size)``, aligned to multiples of ``size`` since the epoch, per
(model, version) stream. A stream's watermark is its largest event time minus the allowed lateness; a window
closes once the watermark reaches its end, and an event whose window already closed is *late*. Everything
here depends only on the order of a stream's own events, never on the wall clock or on other streams, so a
replay, a live run and a run restarted from a checkpoint cut the same windows.
"""

from __future__ import annotations

import numpy as np

__all__ = ["window_start_ms", "is_late", "closed_by_ms", "watermark_before_ms"]

NO_EVENTS_YET = np.iinfo(np.int64).min // 4


def window_start_ms(ts_ms, size_ms: int):
    """Start of the tumbling window holding ``ts_ms`` (works on ints and int64 arrays; negative-safe)."""
    return ts_ms - ts_ms % size_ms


def watermark_before_ms(ts_ms: np.ndarray, max_ts_before_ms: int) -> np.ndarray:
    """Largest event time seen *before* each event of a batch (the batch in arrival order)."""
    running = np.maximum.accumulate(ts_ms)
    before = np.empty_like(ts_ms)
    before[0] = max_ts_before_ms
    if ts_ms.size > 1:
        np.maximum(running[:-1], max_ts_before_ms, out=before[1:])
    return before


def is_late(window_end_ms, max_ts_before_ms, lateness_ms: int):
    """True when the event's window had closed before the event arrived (ints, or int64 arrays elementwise)."""
    return window_end_ms + lateness_ms <= max_ts_before_ms


def closed_by_ms(window_end_ms, max_ts_ms, lateness_ms: int):
    """True once a stream whose watermark is ``max_ts_ms`` must close the window ending at ``window_end_ms``
    (ints, or int64 arrays elementwise)."""
    return window_end_ms + lateness_ms <= max_ts_ms
