"""The streams of one partition (or file): which exist, when their windows are due, when they are forgotten.

:class:`StreamTable` holds the partition's clock (its largest event time, idle advances included), every
(model, version, segment) :class:`~monitor.windowing.streams.StreamState`, and two heaps keyed by partition
time: the open time windows by when each may be due (so the windows of streams that went quiet close without
a scan of every stream) and the streams by when each may expire (``metrics.stream_ttl_seconds``). It returns
what it closes and forgets; counting, sinks and results are the pipeline's.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping

import numpy as np

from detectors.confidence import low_confidence_threshold
from monitor.config import Config
from monitor.ingest.batch import StreamBatch, merge_streams
from monitor.ingest.events import DEFAULT_VERSION
from monitor.ingest.reference import Profile
from monitor.windowing.accumulator import WindowAccumulator
from monitor.windowing.segments import SegmentIndex, rejection_key
from monitor.windowing.streams import StreamState, WindowSpec, hold
from monitor.windowing.watermarks import PartitionRun
from monitor.windowing.windows import NO_EVENTS_YET

__all__ = ["StreamTable", "OTHER_STREAM", "HELD_STREAMS"]

# Streams beyond metrics.max_tracked_streams are windowed together under this name (and no segment).
OTHER_STREAM = ("__other__", "__other__", "")
# Rejections of streams not seen yet are held (for the stream's first window) for at most this many
# streams; the oldest is dropped first, so garbage model names cannot grow memory.
HELD_STREAMS = 1024

Key = tuple[str, str, str]  # (model, version, segment); segment "" for the segment-less stream
Closed = tuple[StreamState, WindowAccumulator]


class StreamTable:
    """The (model, version, segment) streams of one partition and the partition's clock."""

    def __init__(self, config: Config, profiles: Mapping[str, Profile], *, base_width: int):
        self.spec = WindowSpec.from_config(config, base_width)
        self.profiles = profiles
        self._max_tracked = config.metrics.max_tracked_streams
        self._ttl_ms = int(round(config.metrics.stream_ttl_seconds * 1000))
        self._by_segment, self._max_segments = config.window.by_segment, config.window.max_segments
        # Per model: the configured threshold, or the rule for its profile's number of classes (2 without one).
        setting = config.detect.low_confidence_threshold
        self._low = {m: low_confidence_threshold(len(p.class_counts), setting) for m, p in profiles.items()}
        self._low_default = low_confidence_threshold(2, setting)
        self.partition_ms = NO_EVENTS_YET  # the partition's (file's) largest event time, idle advances included
        self.event_max_ms = NO_EVENTS_YET  # ... of events only
        self.n_open = 0
        self.segments = SegmentIndex()  # each model's segments with a stream (window.max_segments)
        self._streams: dict[Key, StreamState] = {}
        self.held: dict[Key, int] = {}  # rejections of streams not seen yet (HELD_STREAMS)
        self._due: list[tuple[int, str, str, str, int]] = []  # (partition time to look again, *stream key, key)
        self._expiry: list[tuple[int, str, str, str]] = []  # (partition time to look again, *stream key)

    def low_threshold(self, model: str) -> float:
        """The confidence below which a prediction of ``model`` counts as low (docs/config.md, [detect])."""
        return self._low.get(model, self._low_default)

    def __contains__(self, key: Key) -> bool:
        return key in self._streams

    def __len__(self) -> int:
        return len(self._streams)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._streams)

    def get(self, key: Key) -> StreamState | None:
        return self._streams.get(key)

    # -- feeding -----------------------------------------------------------------------------------------------
    def hold(self, key: Key, n: int) -> None:
        """Count ``n`` rejections of a stream not seen yet, for its first window."""
        hold(self.held, HELD_STREAMS, key, n)

    def name_rejections(self, rejected: list, groups: Mapping[Key, StreamBatch]) -> dict[Key, list[int]]:
        """A chunk's rejections (``(position, record, InvalidEvent)``) that name a stream, by the stream they count
        in (segments folded as their events are); those of a stream neither known nor in the chunk's ``groups``
        are held for its first window."""
        named: dict[Key, list[int]] = {}
        for r, _, exc in rejected:
            if exc.model is not None:
                key = (exc.model, exc.version or DEFAULT_VERSION, (exc.segment or "") if self._by_segment else "")
                named.setdefault(rejection_key(key, self.segments, self._max_segments, groups), []).append(r)
        for key, rs in named.items():
            if key not in self._streams and key not in groups:
                self.hold(key, len(rs))
        return named

    def attribute_rejections(self, named: Mapping[Key, list[int]], run: PartitionRun) -> None:
        """Count the rejections of known streams (record positions ``named`` by stream) in their windows."""
        for key, rs in named.items():
            stream = self._streams.get(key)
            if stream is not None:
                rs = np.asarray(rs, dtype=np.int64)
                stream.attribute(rs, np.zeros(len(rs), np.int64), run.before_records(rs))

    def tracked(self, streams: dict[Key, StreamBatch]) -> tuple[dict[Key, StreamBatch], int]:
        """Fold the streams over metrics.max_tracked_streams into one (OTHER_STREAM), in arrival order; return
        the streams to window and the number of events folded."""
        out: dict[Key, StreamBatch] = {}
        folded: list[StreamBatch] = []
        room = self._max_tracked - len(self._streams)
        for key, sb in streams.items():
            if key in self._streams or key == OTHER_STREAM:
                out[key] = sb
            elif room > (0 if OTHER_STREAM in self._streams else 1):
                out[key] = sb
                room -= 1
            else:
                folded.append(sb)
        if not folded:
            return out, 0
        n = sum(sb.idx.size for sb in folded)
        if OTHER_STREAM in out:
            folded.append(out.pop(OTHER_STREAM))
        out[OTHER_STREAM] = merge_streams(folded, 2 + self.spec.base_width)
        return out, n

    def stream(self, key: Key) -> StreamState:
        """The stream ``key``, created (with the rejections held for it) when it is new."""
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = StreamState.for_profile(key, self.profiles.get(key[0]), spec=self.spec)
            stream.pending_invalid = self.held.pop(key, 0)
            self.segments.add(key)
        return stream

    def add(self, stream: StreamState, sb: StreamBatch, part: PartitionRun, rejected: np.ndarray, **kw
            ) -> tuple[int, list[Closed]]:
        """:meth:`StreamState.add` (``kw``: its keywords but the threshold), then register the windows it opened;
        return the number of late events and the windows now due, taken out of the stream."""
        opened, n_late = stream.add(sb, part, rejected, low_threshold=self.low_threshold(stream.model), **kw)
        self._opened(stream, opened.tolist())
        if self.spec.time:
            self._queue_expiry(stream)
        return n_late, [self._take(stream, k) for k in stream.due(self.partition_ms)]

    def advance(self, run: PartitionRun, ts: np.ndarray) -> None:
        """The chunk's events (event times ``ts``) have been windowed: move the partition's clock past them."""
        if ts.size:
            self.partition_ms = max(run.p0, int(run.run[-1]))
            self.event_max_ms = max(self.event_max_ms, int(ts.max()))

    # -- closing -------------------------------------------------------------------------------------------------
    def close_by_partition(self) -> list[Closed]:
        """The windows of streams that went quiet that the partition's watermark has passed."""
        out = []
        due, p = self._due, self.partition_ms
        while due and due[0][0] <= p:
            _, model, version, segment, key = heapq.heappop(due)
            stream = self._streams.get((model, version, segment))
            if stream is None or key not in stream.open:
                continue  # closed meanwhile by the stream's own watermark
            if stream.closed(key, p):
                out.append(self._take(stream, key))
            else:  # still active: look again once it could have been idle long enough
                end = stream.open[key].end_ms
                heapq.heappush(due, (max(end, stream.last_p_ms) + self.spec.lateness_ms, model, version, segment, key))
        return out

    def close_all(self) -> list[Closed]:
        """Every open window, stream by stream in key order (the end of the input)."""
        out = [self._take(stream, k) for stream in list(self._streams.values()) for k in sorted(stream.open)]
        self._due.clear()
        return out

    def expire(self) -> list[tuple[StreamState, bool]]:
        """Forget the streams without events for metrics.stream_ttl_seconds of partition time; return each with
        whether it was the last stream of its (model, version)."""
        out = []
        exp, p = self._expiry, self.partition_ms
        while exp and exp[0][0] <= p:
            key = tuple(heapq.heappop(exp)[1:])
            stream = self._streams.get(key)
            if stream is None:
                continue
            again = stream.expiry_again(p, self._ttl_ms)
            stream.expiry_queued = again is not None
            if again is not None:
                heapq.heappush(exp, (again, *key))
                continue
            del self._streams[key]
            self.segments.remove(key)
            out.append((stream, not any(k[:2] == key[:2] for k in self._streams)))
        return out

    def _take(self, stream: StreamState, key: int) -> Closed:
        self.n_open -= 1
        return stream, stream.open.pop(key)

    def _opened(self, stream: StreamState, keys: list[int]) -> None:
        self.n_open += len(keys)
        if self.spec.time:
            for key in keys:
                heapq.heappush(self._due, (stream.open[key].end_ms + self.spec.lateness_ms, *stream.key, key))

    def _queue_expiry(self, stream: StreamState) -> None:
        if self._ttl_ms > 0 and not stream.expiry_queued:
            stream.expiry_queued = True
            heapq.heappush(self._expiry, (stream.last_p_ms + self._ttl_ms, *stream.key))

    # -- checkpoints -------------------------------------------------------------------------------------------
    def state(self) -> dict:
        """The partition's clock, the held rejections and every stream (the first keys of the pipeline's state)."""
        return {
            "max_ts_ms": self.partition_ms,
            "event_max_ts_ms": self.event_max_ms,
            "held": [[m, v, n, *([s] if s else [])] for (m, v, s), n in self.held.items()],
            "streams": [s.state() for s in self._streams.values()],
        }  # fmt: skip

    def restore(self, state: dict) -> list[tuple[StreamState, int]]:
        """Put back :meth:`state`; return the open windows whose samples restart (another profile's columns)."""
        # A checkpoint written before partition watermarks: the partition's time is its newest event.
        p = max([s["max_ts_ms"] for s in state["streams"]], default=NO_EVENTS_YET)
        self.partition_ms = state.get("max_ts_ms", p)
        self.event_max_ms = state.get("event_max_ts_ms", p)
        # [model, version, n] (segment-less, and every checkpoint written before segments) or [..., segment].
        self.held = {(h[0], h[1], h[3] if len(h) > 3 else ""): h[2] for h in state.get("held", ())}
        refitted = []
        for s in state["streams"]:
            stream = StreamState.from_state(s, self.profiles.get(s["model"]), partition_ms=self.partition_ms,
                                            spec=self.spec)
            self._streams[stream.key] = stream
            self.segments.add(stream.key)
            refitted += [(stream, key) for key in stream.refit_open_windows()]
            # Windows restored from a checkpoint go back on the due heap even under a changed window kind.
            self.n_open += len(stream.open)
            for key, acc in stream.open.items():
                if acc.kind == "time":
                    heapq.heappush(self._due, (acc.end_ms + self.spec.lateness_ms, *stream.key, key))
            if self.spec.time:
                self._queue_expiry(stream)
        return refitted
