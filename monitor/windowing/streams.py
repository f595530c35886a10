"""What the pipeline keeps per (model, version, segment) stream: its clock, its open windows, what waits for a window."""

from __future__ import annotations

from monitor.ingest.reference import Profile
from monitor.windowing.accumulator import _EMBEDDING_SALT, WindowAccumulator
from monitor.windowing.reservoir import Reservoir
from monitor.windowing.windows import NO_EVENTS_YET

__all__ = ["StreamState", "hold"]


class StreamState:
    """Window bookkeeping of one (model, version, segment) stream (the clock fields: monitor/windowing/watermarks.py);
    ``segment`` is "" for the segment-less stream (window.by_segment off, or events without a segment)."""

    __slots__ = ("model", "version", "max_ts_ms", "last_p_ms", "frontier_ms", "count", "open", "pending_late",
                 "pending_invalid", "custom", "probability_classes", "embedding_components", "expiry_queued", "segment")

    def __init__(self, model: str, version: str, custom: tuple[str, ...], probability_classes: tuple[str, ...] = (),
                 embedding_components: int = 0, segment: str = ""):
        self.model, self.version, self.segment = model, version, segment
        self.max_ts_ms = NO_EVENTS_YET  # largest event time of the stream
        self.last_p_ms = NO_EVENTS_YET  # the partition's largest event time at the stream's last event
        self.frontier_ms = NO_EVENTS_YET  # the partition watermark it followed while idle
        self.count = 0  # valid events seen, for count windows
        self.open: dict[int, WindowAccumulator] = {}  # by start (time windows) or sequence number (count)
        # Late and rejected records read while none of the stream's windows was open: they count in its next
        # window to open (docs/results.md).
        self.pending_late = 0
        self.pending_invalid = 0
        self.custom = custom  # the profile's custom features, then oov_rate when it holds a vocabulary
        # Columns after the custom features in its rows: the profile's classes whose probabilities BBSD tests.
        self.probability_classes = probability_classes
        # The last columns: the projected embedding, split off into the window's own embedding sample.
        self.embedding_components = embedding_components
        self.expiry_queued = False  # whether the pipeline's expiry heap holds an entry for it

    def state(self) -> dict:
        return {
            "model": self.model, "version": self.version, "max_ts_ms": self.max_ts_ms, "count": self.count,
            "last_p_ms": self.last_p_ms, "frontier_ms": self.frontier_ms,
            "pending_late": self.pending_late, "pending_invalid": self.pending_invalid,
            "open": [acc.state() for acc in self.open.values()],
            **({"segment": self.segment} if self.segment else {}),
        }  # fmt: skip

    @property
    def key(self) -> tuple[str, str, str]:
        return self.model, self.version, self.segment

    @property
    def segment_kw(self) -> dict:
        """The ``segment`` keyword of the sink calls about this stream; none for the segment-less stream, whose
        calls stay what they were before segments."""
        return {"segment": self.segment} if self.segment else {}

    @classmethod
    def for_profile(cls, model: str, version: str, profile: Profile | None, segment: str = "") -> "StreamState":
        """A new stream whose rows carry the columns its reference profile tests (custom features, probabilities)."""
        if profile is None:
            return cls(model, version, (), segment=segment)
        return cls(model, version, profile.stream_features, profile.probability_classes, profile.embedding_components,
                   segment)

    def row_width(self, base_width: int) -> int:
        """Columns of the window's reservoir: latency, confidence, ``base_width`` features, custom, probabilities
        (the stream's rows carry the ``embedding_components`` after them)."""
        return 2 + base_width + len(self.custom) + len(self.probability_classes)

    def refit_open_windows(self, base_width: int, embedding_sample: int) -> list[int]:
        """Restart the samples of open windows whose columns are not the profile's; return their keys.

        A checkpoint written under another reference profile (a vocabulary, classes, custom features or a
        projection added or removed since) holds reservoirs of another width, which the stream's rows no
        longer fit. Their counts stay exact; their samples start again from the next event (the tests of
        those windows then see only what arrived after the restart), instead of the daemon failing on
        every restart from that checkpoint.
        """
        width = self.row_width(base_width)
        changed = []
        for key, acc in self.open.items():
            components = acc.embeddings.width if acc.embeddings is not None else 0
            if acc.reservoir.width == width and components == self.embedding_components:
                continue
            old = acc.reservoir
            acc.reservoir = Reservoir(old.capacity, width, old.seed)
            # The seeds the accumulator derives from the window's identity (monitor/windowing/accumulator.py).
            acc.embeddings = (Reservoir(embedding_sample, self.embedding_components, old.seed ^ _EMBEDDING_SALT)
                              if self.embedding_components else None)
            changed.append(key)
        return changed

    @classmethod
    def from_state(cls, s: dict, profile: Profile | None, *, partition_ms: int) -> "StreamState":
        # Checkpoints written before partition watermarks lack last_p_ms/frontier_ms: the stream then counts
        # as seen at the partition's current time, and never idle before.
        # A checkpoint written before segments holds segment-less streams only.
        stream = cls.for_profile(s["model"], s["version"], profile, s.get("segment", ""))
        stream.max_ts_ms, stream.count = s["max_ts_ms"], s["count"]
        stream.last_p_ms = s.get("last_p_ms", partition_ms)
        stream.frontier_ms = s.get("frontier_ms", NO_EVENTS_YET)
        stream.pending_late, stream.pending_invalid = s["pending_late"], s["pending_invalid"]
        for acc_state in s["open"]:
            acc = WindowAccumulator.from_state(acc_state)
            stream.open[acc.start_ms if acc.kind == "time" else acc.seq] = acc
        return stream

    def expiry_again(self, p: int, ttl_ms: int, lateness_ms: int) -> int | None:
        """At partition time ``p``: None when the stream may be forgotten (no event for ``ttl_ms`` and no open
        window), else the partition time at which to look again (after its open windows could have closed)."""
        if self.last_p_ms + ttl_ms > p or self.open:
            again = max([self.last_p_ms + ttl_ms] + [a.end_ms + lateness_ms for a in self.open.values()])
            if again > p or not self.open:
                return max(again, p + 1)
        return None


def hold(held: dict, limit: int, key: tuple, n: int) -> None:
    """Count ``n`` rejections of a stream not seen yet in ``held``, keeping at most ``limit`` streams (the one
    held longest is dropped first: garbage model names cannot grow memory)."""
    held[key] = held.pop(key, 0) + n  # re-inserted: the most recent is dropped last
    while len(held) > limit:
        del held[next(iter(held))]
