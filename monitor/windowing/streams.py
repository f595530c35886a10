"""What the pipeline keeps per (model, version, segment) stream: its clock, its open windows, what waits for a
window, and the state machine that moves them (open, add, attribute late and rejected records, close).

The rules are the pure functions of :mod:`monitor.windowing.windows` (the window of an event, whether it is
late, whether a window is closed) and :mod:`monitor.windowing.watermarks` (the stream's clock per record
position); this module only applies them to one stream's fields.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from monitor.config import Config
from monitor.ingest.batch import StreamBatch
from monitor.ingest.reference import Profile
from monitor.windowing.accumulator import BatchSlice, WindowAccumulator, embedding_seed
from monitor.windowing.evidence import EvidenceSlice
from monitor.windowing.reservoir import Reservoir
from monitor.windowing.watermarks import PartitionRun, StreamClock, attribution, clock_at, stream_clock
from monitor.windowing.windows import NO_EVENTS_YET, closed_by_ms, is_late, window_start_ms

__all__ = ["StreamState", "WindowSpec", "hold"]

_NONE_OPENED = (np.empty(0, np.int64), np.empty(0, np.int64))


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """The window settings all streams of a pipeline share (``[window]``, ``[embedding]``), in milliseconds."""

    kind: str  # "time" or "count"
    size_ms: int
    lateness_ms: int  # also how long a stream goes without events before it counts as idle
    events: int  # per count window
    reservoir_size: int
    seed: int
    embedding_sample: int
    base_width: int  # the base features every row carries

    @classmethod
    def from_config(cls, config: Config, base_width: int) -> WindowSpec:
        w = config.window
        return cls(kind=w.kind, size_ms=max(1, int(round(w.size_seconds * 1000))),
                   lateness_ms=int(round(w.lateness_seconds * 1000)), events=w.events,
                   reservoir_size=w.reservoir_size, seed=w.seed, embedding_sample=config.embedding.sample_size,
                   base_width=base_width)

    @property
    def time(self) -> bool:
        return self.kind == "time"


class StreamState:
    """Window bookkeeping of one (model, version, segment) stream (the clock fields: monitor/windowing/watermarks.py);
    ``segment`` is "" for the segment-less stream (window.by_segment off, or events without a segment)."""

    __slots__ = ("model", "version", "max_ts_ms", "last_p_ms", "frontier_ms", "count", "open", "pending_late",
                 "pending_invalid", "custom", "probability_classes", "embedding_components", "expiry_queued", "segment",
                 "spec")

    def __init__(self, key: tuple[str, str, str], *, spec: WindowSpec, custom: tuple[str, ...] = (),
                 probability_classes: tuple[str, ...] = (), embedding_components: int = 0):
        self.model, self.version, self.segment = key
        self.spec = spec
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
    def for_profile(cls, key: tuple[str, str, str], profile: Profile | None, *, spec: WindowSpec) -> StreamState:
        """A new stream whose rows carry the columns its reference profile tests (custom features, probabilities)."""
        if profile is None:
            return cls(key, spec=spec)
        return cls(key, spec=spec, custom=profile.stream_features, probability_classes=profile.probability_classes,
                   embedding_components=profile.embedding_components)

    def row_width(self, base_width: int) -> int:
        """Columns of the window's reservoir: latency, confidence, ``base_width`` features, custom, probabilities
        (the stream's rows carry the ``embedding_components`` after them)."""
        return 2 + base_width + len(self.custom) + len(self.probability_classes)

    def refit_open_windows(self) -> list[int]:
        """Restart the samples of open windows whose columns are not the profile's; return their keys.

        A checkpoint written under another reference profile (a vocabulary, classes, custom features or a
        projection added or removed since) holds reservoirs of another width, which the stream's rows no
        longer fit. Their counts stay exact; their samples start again from the next event (the tests of
        those windows then see only what arrived after the restart), instead of the daemon failing on
        every restart from that checkpoint.
        """
        width = self.row_width(self.spec.base_width)
        changed = []
        for key, acc in self.open.items():
            components = acc.embeddings.width if acc.embeddings is not None else 0
            if acc.reservoir.width == width and components == self.embedding_components:
                continue
            old = acc.reservoir
            acc.reservoir = Reservoir(old.capacity, width, old.seed)
            # The seeds the accumulator derives from the window's identity (monitor/windowing/accumulator.py).
            acc.embeddings = (Reservoir(self.spec.embedding_sample, self.embedding_components, embedding_seed(old.seed))
                              if self.embedding_components else None)
            changed.append(key)
        return changed

    @classmethod
    def from_state(cls, s: dict, profile: Profile | None, *, partition_ms: int, spec: WindowSpec) -> StreamState:
        # Checkpoints written before partition watermarks lack last_p_ms/frontier_ms: the stream then counts
        # as seen at the partition's current time, and never idle before.
        # A checkpoint written before segments holds segment-less streams only.
        stream = cls.for_profile((s["model"], s["version"], s.get("segment", "")), profile, spec=spec)
        stream.max_ts_ms, stream.count = s["max_ts_ms"], s["count"]
        stream.last_p_ms = s.get("last_p_ms", partition_ms)
        stream.frontier_ms = s.get("frontier_ms", NO_EVENTS_YET)
        stream.pending_late, stream.pending_invalid = s["pending_late"], s["pending_invalid"]
        for acc_state in s["open"]:
            acc = WindowAccumulator.from_state(acc_state)
            stream.open[acc.start_ms if acc.kind == "time" else acc.seq] = acc
        return stream

    def expiry_again(self, p: int, ttl_ms: int) -> int | None:
        """At partition time ``p``: None when the stream may be forgotten (no event for ``ttl_ms`` and no open
        window), else the partition time at which to look again (after its open windows could have closed)."""
        if self.last_p_ms + ttl_ms > p or self.open:
            lateness_ms = self.spec.lateness_ms
            again = max([self.last_p_ms + ttl_ms] + [a.end_ms + lateness_ms for a in self.open.values()])
            if again > p or not self.open:
                return max(again, p + 1)
        return None


    # -- the window state machine ----------------------------------------------------------------------------
    def add(self, sb: StreamBatch, part: PartitionRun, rejected: np.ndarray, *, low_threshold: float,
            texts: list | None = None, offer: Callable | None = None, evidence: EvidenceSlice | None = None,
            classes: Counter | None = None) -> tuple[np.ndarray, int]:
        """Window the stream's events of a chunk (``sb``) and count its late events and its ``rejected`` records
        (record positions) where they belong; return the keys of the windows it opened, in the order they
        opened, and the number of late events. ``offer(window, texts)`` gets each window's share of ``texts``,
        each window its share of ``evidence`` (windowing/evidence.py). ``classes``: ``Counter(sb.preds)``, when
        the caller has it (read only).
        """
        spec = self.spec
        ts, n = sb.ts, sb.ts.size
        ev_pos = part.pos[sb.idx]
        clock = None
        # What waited for a window (read while none of the stream's was open) goes to its next one to open.
        carried = (self.pending_invalid, self.pending_late)
        self.pending_invalid = self.pending_late = 0
        if spec.time:
            p_before = part.before[sb.idx]
            clock = stream_clock(ts, p_before, part.run[sb.idx], max_ts0=self.max_ts_ms, last_p0=self.last_p_ms,
                                 frontier0=self.frontier_ms, idle_ms=spec.lateness_ms)
            keys = window_start_ms(ts, spec.size_ms)
            late = is_late(keys + spec.size_ms, clock.watermark_before, spec.lateness_ms)
            n_late = int(late.sum())
            keep = np.flatnonzero(~late) if n_late else None
        else:
            keys = (self.count + np.arange(n, dtype=np.int64)) // spec.events
            n_late, keep = 0, None
        opened = self._route(sb, keys, ev_pos, keep=keep, low_threshold=low_threshold, texts=texts, offer=offer,
                             evidence=evidence, classes=classes)
        if opened[0].size:
            first = self.open[int(opened[0][0])]
            first.invalid, first.late = first.invalid + carried[0], first.late + carried[1]
        else:
            self.pending_invalid, self.pending_late = carried
        # Late and rejected records count in the window of their stream open at their position.
        if n_late:
            self.attribute(ev_pos[late], np.flatnonzero(late), p_before[late], clock=clock, opened=opened, late=True)
        if rejected.size:
            self.attribute(rejected, np.searchsorted(ev_pos, rejected), part.before_records(rejected), clock=clock,
                           opened=opened)
        if spec.time:
            self.max_ts_ms = int(clock.max_incl[-1])
            self.last_p_ms = int(clock.last_p_incl[-1])
            self.frontier_ms = int(clock.frontier_incl[-1])
        else:
            self.count += n
        return opened[0], n_late

    def _route(self, sb: StreamBatch, keys: np.ndarray, ev_pos: np.ndarray, *, keep: np.ndarray | None,
               low_threshold: float, texts: list | None, offer: Callable | None,
               evidence: EvidenceSlice | None = None, classes: Counter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Add the ``keep`` events (all when None) to their windows; return the keys of the windows opened and
        the record positions where they opened, sorted by position. ``classes``: ``Counter(sb.preds)`` or None."""
        ts, rows, preds, labels, entropy = sb.ts, sb.rows, sb.preds, sb.labels, sb.entropy
        if keep is not None:
            if keep.size == 0:
                return _NONE_OPENED
            classes = None  # (counted over all the events, not the kept ones)
            keys, ts, rows, entropy, ev_pos = keys[keep], ts[keep], rows[keep], entropy[keep], ev_pos[keep]
            preds = [preds[i] for i in keep]
            labels = [labels[i] for i in keep]
            texts = [texts[i] for i in keep] if texts is not None else None
            evidence = evidence.take(keep) if evidence is not None else None
        first, last = keys[0], keys[-1]
        if first == last and (keys.size < 3 or (keys == first).all()):
            groups = [(int(first), None, 0)]  # the common case: the whole batch falls into one window
        else:
            uniq, first_idx, inverse = np.unique(keys, return_index=True, return_inverse=True)
            groups = [(int(k), np.flatnonzero(inverse == j), int(first_idx[j])) for j, k in enumerate(uniq)]
        opened: list[tuple[int, int]] = []
        for k, sel, first_i in groups:
            acc = self.open.get(k)
            if acc is None:
                acc = self.open[k] = self._new_window(k)
                opened.append((int(ev_pos[first_i]), k))
            if sel is None:
                acc.add(BatchSlice(ts, rows, preds, labels, entropy, low_threshold, evidence, classes))
            else:
                at = sel.tolist()  # (list indexing with Python ints: numpy scalars cost more per item)
                acc.add(BatchSlice(ts[sel], rows[sel], [preds[i] for i in at], [labels[i] for i in at], entropy[sel],
                                   low_threshold, evidence.take(sel) if evidence is not None else None))
            if texts is not None:  # the window's seeded sample of texts, embedded off the hot path
                offer(acc, texts if sel is None else [texts[i] for i in sel.tolist()])
        opened.sort()
        return (np.array([k for _, k in opened], dtype=np.int64), np.array([p for p, _ in opened], dtype=np.int64))

    def _new_window(self, key: int) -> WindowAccumulator:
        spec = self.spec
        start, end, seq = (key, key + spec.size_ms, 0) if spec.time else (0, 0, key)
        return WindowAccumulator(
            model=self.model, version=self.version, kind=spec.kind, start_ms=start, end_ms=end, seq=seq,
            width=self.row_width(spec.base_width), reservoir_size=spec.reservoir_size, seed=spec.seed,
            embedding=(self.embedding_components, spec.embedding_sample), segment=self.segment,
        )  # fmt: skip

    def attribute(self, positions: np.ndarray, k: np.ndarray, p_before: np.ndarray, *, clock: StreamClock | None = None,
                  opened: tuple[np.ndarray, np.ndarray] = _NONE_OPENED, late: bool = False) -> None:
        """Count late (``late``) or rejected records (at record ``positions``, each preceded by ``k`` of the
        stream's events of the chunk, with the partition's time ``p_before`` then) in the window of the stream
        open there, else in the next window to open (``opened``: keys and positions, by :meth:`add`)."""
        spec = self.spec
        if spec.time:
            smax, watermark = clock_at(clock, k, p_before, max_ts0=self.max_ts_ms, last_p0=self.last_p_ms,
                                       frontier0=self.frontier_ms, idle_ms=spec.lateness_ms)
            target = window_start_ms(smax, spec.size_ms)
            is_open = (smax != NO_EVENTS_YET) & ~closed_by_ms(target + spec.size_ms, watermark, spec.lateness_ms)
        else:
            count = self.count + k
            target = (count - 1) // spec.events
            is_open = (count > 0) & (count % spec.events != 0)
        counts, left = attribution(target, is_open, positions, opened_keys=opened[0], opened_at=opened[1])
        for key, n in counts.items():
            acc = self.open.get(key)
            if acc is None:  # not for a consistent state; never lose the count
                left += n
            elif late:
                acc.late += n
            else:
                acc.invalid += n
        if late:
            self.pending_late += left
        else:
            self.pending_invalid += left

    def watermark(self, partition_ms: int) -> int:
        """The stream's effective watermark at the current end of the record sequence (``partition_ms``: the
        partition's largest event time): its own, or the partition's once it has been idle for the lateness."""
        idle = partition_ms - self.last_p_ms >= self.spec.lateness_ms
        return max(self.max_ts_ms, self.frontier_ms, partition_ms if idle else NO_EVENTS_YET)

    def closed(self, key: int, partition_ms: int) -> bool:
        """Whether the open time window ``key`` is closed at partition time ``partition_ms``."""
        return closed_by_ms(self.open[key].end_ms, self.watermark(partition_ms), self.spec.lateness_ms)

    def due(self, partition_ms: int) -> list[int]:
        """The keys of the open windows that must close now, in order."""
        spec = self.spec
        if spec.time:
            watermark = self.watermark(partition_ms)
            due = [k for k, acc in self.open.items() if closed_by_ms(acc.end_ms, watermark, spec.lateness_ms)]
        else:
            due = [k for k, acc in self.open.items() if acc.events >= spec.events]
        return sorted(due)


def hold(held: dict, limit: int, key: tuple, n: int) -> None:
    """Count ``n`` rejections of a stream not seen yet in ``held``, keeping at most ``limit`` streams (the one
    held longest is dropped first: garbage model names cannot grow memory)."""
    held[key] = held.pop(key, 0) + n  # re-inserted: the most recent is dropped last
    while len(held) > limit:
        del held[next(iter(held))]
