"""What the pipeline keeps per (model, version) stream: its clock, its open windows, what waits for a window."""

from __future__ import annotations

from monitor.windowing.accumulator import WindowAccumulator
from monitor.windowing.windows import NO_EVENTS_YET

__all__ = ["StreamState"]


class StreamState:
    """Window bookkeeping of one (model, version) stream (the clock fields: monitor/windowing/watermarks.py)."""

    __slots__ = ("model", "version", "max_ts_ms", "last_p_ms", "frontier_ms", "count", "open", "pending_late",
                 "pending_invalid", "custom", "expiry_queued")

    def __init__(self, model: str, version: str, custom: tuple[str, ...]):
        self.model, self.version = model, version
        self.max_ts_ms = NO_EVENTS_YET  # largest event time of the stream
        self.last_p_ms = NO_EVENTS_YET  # the partition's largest event time at the stream's last event
        self.frontier_ms = NO_EVENTS_YET  # the partition watermark it followed while idle
        self.count = 0  # valid events seen, for count windows
        self.open: dict[int, WindowAccumulator] = {}  # by start (time windows) or sequence number (count)
        # Late and rejected records read while none of the stream's windows was open: they count in its next
        # window to open (docs/results.md).
        self.pending_late = 0
        self.pending_invalid = 0
        self.custom = custom
        self.expiry_queued = False  # whether the pipeline's expiry heap holds an entry for it

    def state(self) -> dict:
        return {
            "model": self.model, "version": self.version, "max_ts_ms": self.max_ts_ms, "count": self.count,
            "last_p_ms": self.last_p_ms, "frontier_ms": self.frontier_ms,
            "pending_late": self.pending_late, "pending_invalid": self.pending_invalid,
            "open": [acc.state() for acc in self.open.values()],
        }  # fmt: skip

    @classmethod
    def from_state(cls, s: dict, custom: tuple[str, ...], *, partition_ms: int) -> "StreamState":
        # Checkpoints written before partition watermarks lack last_p_ms/frontier_ms: the stream then counts
        # as seen at the partition's current time, and never idle before.
        stream = cls(s["model"], s["version"], custom)
        stream.max_ts_ms, stream.count = s["max_ts_ms"], s["count"]
        stream.last_p_ms = s.get("last_p_ms", partition_ms)
        stream.frontier_ms = s.get("frontier_ms", NO_EVENTS_YET)
        stream.pending_late, stream.pending_invalid = s["pending_late"], s["pending_invalid"]
        for acc_state in s["open"]:
            acc = WindowAccumulator.from_state(acc_state)
            stream.open[acc.start_ms if acc.kind == "time" else acc.seq] = acc
        return stream
