"""Watermarks of the streams of one partition (or file), per record position, as array arithmetic.

A stream's watermark is its largest event time; a stream is *idle* at a position when the partition's largest
event time (advanced by every stream on it) has moved by at least ``idle_ms`` since the stream's own last
event, and an idle stream's watermark follows the partition's from then on (its ``frontier``). A window
closes once the watermark reaches its end plus the allowed lateness. Every value here is a function of the
record sequence alone, evaluated at each position, never of where a batch ended: that is what keeps replays,
live runs and restarts from a checkpoint identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.windowing.windows import NO_EVENTS_YET

__all__ = ["PartitionRun", "StreamClock", "stream_clock", "clock_at", "partition_before", "attribution"]


def partition_before(run_incl: np.ndarray, p0: int, k: np.ndarray) -> np.ndarray:
    """Partition max event time before the records that have ``k`` events of the chunk in front of them."""
    return np.where(k > 0, run_incl[np.maximum(k - 1, 0)], p0) if run_incl.size else np.full(k.shape, p0, np.int64)


@dataclass(frozen=True, slots=True)
class PartitionRun:
    """The partition's clock over one chunk's events (arrays aligned with the events, in arrival order)."""

    p0: int  # the partition's largest event time before the chunk
    run: np.ndarray  # ... including each event
    before: np.ndarray  # ... before each event
    pos: np.ndarray  # each event's record position in the chunk

    @classmethod
    def over(cls, ts: np.ndarray, pos: np.ndarray, p0: int) -> PartitionRun:
        if not ts.size:
            return cls(p0, ts, ts, pos)
        run = np.maximum.accumulate(np.maximum(ts, p0))
        return cls(p0, run, np.concatenate(([p0], run[:-1])), pos)

    def before_records(self, positions: np.ndarray) -> np.ndarray:
        """The partition's largest event time before each record at ``positions`` (records of any kind)."""
        return partition_before(self.run, self.p0, np.searchsorted(self.pos, positions))


@dataclass(slots=True)
class StreamClock:
    """One stream's clock over its events of a chunk (arrays aligned with those events, in arrival order)."""

    max_before: np.ndarray  # the stream's max event time before each event
    max_incl: np.ndarray  # ... including it
    last_p_before: np.ndarray  # partition max at the stream's previous event
    last_p_incl: np.ndarray  # partition max at this event
    frontier_incl: np.ndarray  # idle frontier once this event's idleness is counted
    watermark_before: np.ndarray  # the stream's effective watermark when the event arrives


def stream_clock(ts: np.ndarray, p_before: np.ndarray, p_incl: np.ndarray, *, max_ts0: int, last_p0: int,
                 frontier0: int, idle_ms: int) -> StreamClock:
    """The clock of one stream's events of a chunk, given the partition max before/at each of them."""
    max_incl = np.maximum.accumulate(np.maximum(ts, max_ts0))
    max_before = np.concatenate(([max_ts0], max_incl[:-1]))
    last_p_before = np.concatenate(([last_p0], p_incl[:-1]))
    idle = p_before - last_p_before >= idle_ms
    frontier = np.maximum.accumulate(np.maximum(np.where(idle, p_before, NO_EVENTS_YET), frontier0))
    return StreamClock(max_before, max_incl, last_p_before, p_incl, frontier, np.maximum(max_before, frontier))


def clock_at(clock: StreamClock | None, k: np.ndarray, p_before: np.ndarray, *, max_ts0: int, last_p0: int,
             frontier0: int, idle_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """(stream max, effective watermark) at records preceded by ``k`` of the stream's events of the chunk."""
    if clock is None or clock.max_incl.size == 0:
        smax = np.full(k.shape, max_ts0, np.int64)
        last_p = np.full(k.shape, last_p0, np.int64)
        frontier = np.full(k.shape, frontier0, np.int64)
    else:
        j = np.maximum(k - 1, 0)
        has = k > 0
        smax = np.where(has, clock.max_incl[j], max_ts0)
        last_p = np.where(has, clock.last_p_incl[j], last_p0)
        frontier = np.where(has, clock.frontier_incl[j], frontier0)
    idle = p_before - last_p >= idle_ms
    return smax, np.maximum(np.maximum(smax, frontier), np.where(idle, p_before, NO_EVENTS_YET))


def attribution(target: np.ndarray, is_open: np.ndarray, positions: np.ndarray, *, opened_keys: np.ndarray,
                opened_at: np.ndarray) -> tuple[dict[int, int], int]:
    """Where late or rejected records count: the open window ``target`` where ``is_open``, else the stream's
    next window to open after the record's position (``opened_keys`` opened at ``opened_at``, sorted).

    Returns ``({window key: count}, count left for a window not opened yet)``.
    """
    keys, counts = np.unique(target[is_open], return_counts=True)
    out = dict(zip(keys.tolist(), counts.tolist()))
    later = positions[~is_open]
    left = 0
    if later.size:
        j = np.searchsorted(opened_at, later)
        for key in opened_keys[j[j < opened_keys.size]].tolist():
            out[key] = out.get(key, 0) + 1
        left = int((j >= opened_keys.size).sum())
    return out, left
