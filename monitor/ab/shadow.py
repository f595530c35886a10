"""Shadow mode: join each served prediction with its shadow model's prediction, in bounded time and memory.

A shadow deployment runs a candidate model on the same requests as the served one without using its
answers. Both log an event with the same ``request_id``; the shadow's has ``variant`` equal to a marker
(``"shadow"`` by default). :class:`ShadowJoiner` pairs them up as they stream past, in any order, and
:func:`shadow_summary` describes a window of pairs: how often the two models agree, how their confidences
and latencies differ, and whether their confidence distributions differ (a two-sample KS test).

Time is event time only: an unmatched event is given up once the newest event seen is more than ``ttl_ms``
later than it, so replaying a log gives the same joins as consuming it live, and nothing reads a clock.
"""

from __future__ import annotations

import heapq
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from detectors.shadow import ShadowSummary, summarise_counts
from monitor.results import ShadowResult
from monitor.windowing.accumulator import window_seed
from monitor.windowing.reservoir import Reservoir
from monitor.windowing.windows import window_start_ms

__all__ = ["ShadowPair", "ShadowJoiner", "ShadowSummary", "shadow_summary", "summarise_counts", "ShadowWindows",
           "ShadowResult", "JOIN_OUTCOMES"]

_SERVED, _SHADOW = 0, 1


@dataclass(frozen=True, slots=True)
class ShadowPair:
    """A served prediction and its shadow's, for one request. ``prediction`` is ``None`` for an error."""

    request_id: str
    served_ts_ms: int
    shadow_ts_ms: int
    served_prediction: str | None
    shadow_prediction: str | None
    served_confidence: float | None
    shadow_confidence: float | None
    served_latency_ms: float | None
    shadow_latency_ms: float | None
    model: str | None = None  # the served event's model (what a window of pairs belongs to)


class ShadowJoiner:
    """Join served and shadow events on ``request_id``, holding at most ``max_pending`` unmatched ones.

    An event waits for its partner until the newest event time seen is more than ``ttl_ms`` past its own,
    or until ``max_pending`` is exceeded, when the oldest waiting event (by event time) is given up first.
    Either way it is counted as unmatched (``unmatched_served`` / ``unmatched_shadow``); those given up for
    room are also counted in ``evicted_overflow``. A second event of the same side for a request that is
    waiting, or that was joined less than ``ttl_ms`` ago, is a duplicate: counted and dropped (the first
    one wins). Joined request ids are remembered for that purpose, at most ``max_pending`` of them.

    ``ttl_ms`` must cover how far apart the two events of a request can be in event time plus how far out
    of order the stream arrives: an event that arrives already more than ``ttl_ms`` behind the newest is
    joined only with a partner that is still waiting, and otherwise counted as unmatched at once.

    Parameters
    ----------
    ttl_ms : int
        How long, in event-time milliseconds, an event waits for its partner; at least 0.
    max_pending : int
        Most unmatched events held at once (served and shadow together); at least 1.
    shadow_marker : str, default "shadow"
        The ``variant`` of shadow events; every other event counts as served.

    Examples
    --------
    >>> joiner = ShadowJoiner(ttl_ms=60_000, max_pending=10_000)
    >>> joiner.add("r1", 1_000, shadow=True, prediction="neg", confidence=0.6) is None  # shadow came first
    True
    >>> pair = joiner.add("r1", 990, shadow=False, prediction="pos", confidence=0.9, latency_ms=12.0)
    >>> pair.served_prediction, pair.shadow_prediction, joiner.joined
    ('pos', 'neg', 1)
    >>> joiner.add("r1", 995, shadow=False, prediction="pos") is None, joiner.duplicates
    (True, 1)
    >>> _ = joiner.add("r2", 2_000, shadow=False, prediction="pos")
    >>> _ = joiner.add("r3", 70_000, shadow=False, prediction="pos")  # r2 has waited over a minute
    >>> joiner.unmatched_served, joiner.pending
    (1, 1)
    """

    def __init__(self, ttl_ms: int, max_pending: int, shadow_marker: str = "shadow"):
        if not isinstance(ttl_ms, numbers.Integral) or isinstance(ttl_ms, bool) or ttl_ms < 0:
            raise ValueError(f"ttl_ms must be an integer at least 0, got {ttl_ms!r}.")
        if not isinstance(max_pending, numbers.Integral) or isinstance(max_pending, bool) or max_pending < 1:
            raise ValueError(f"max_pending must be an integer at least 1, got {max_pending!r}.")
        if not isinstance(shadow_marker, str) or not shadow_marker:
            raise ValueError(f"shadow_marker must be a non-empty string, got {shadow_marker!r}.")
        self.ttl_ms = int(ttl_ms)
        self.max_pending = int(max_pending)
        self.shadow_marker = shadow_marker
        self.reset()

    def reset(self) -> None:
        """Forget every waiting event, remembered join and counter."""
        # A waiting event is one record, (ts_ms, seq, request_id, side, prediction, confidence, latency_ms, model),
        # held both in its side's dict (request_id -> record) and in the heap that orders evictions by event
        # time. A record that leaves the dict (joined) stays in the heap until it surfaces or the heap is
        # compacted; it is stale once the dict no longer holds that very record. seq breaks ties in event
        # time, so records never compare beyond it.
        self._waiting: tuple[dict, dict] = ({}, {})
        self._heap: list[tuple] = []
        # request_id -> ts_ms of recently joined requests, in join order, for duplicate detection.
        self._joined_ids: dict[str, int] = {}
        self._seq = 0
        self.max_ts_ms: int | None = None
        self.joined = 0
        self.unmatched_served = 0
        self.unmatched_shadow = 0
        self.duplicates = 0
        self.evicted_overflow = 0
        self.no_request_id = 0

    @property
    def pending(self) -> int:
        """Events waiting for their partner now (at most ``max_pending``)."""
        return len(self._waiting[_SERVED]) + len(self._waiting[_SHADOW])

    def counters(self) -> dict[str, int]:
        """Return the counters (cumulative since construction or :meth:`reset`) and the pending gauge."""
        return {
            "joined": self.joined, "unmatched_served": self.unmatched_served,
            "unmatched_shadow": self.unmatched_shadow, "duplicates": self.duplicates,
            "evicted_overflow": self.evicted_overflow, "no_request_id": self.no_request_id,
            "pending": self.pending,
        }  # fmt: skip

    # -- feeding -------------------------------------------------------------------------------------------
    def add_event(self, event) -> ShadowPair | None:
        """Add one validated event (:class:`monitor.ingest.events.Event`); return the pair it completes, if any."""
        if event.request_id is None:
            self.no_request_id += 1
            return None
        return self.add(
            event.request_id, event.ts_ms, shadow=event.variant == self.shadow_marker,
            prediction=None if event.error is not None else event.prediction,
            confidence=event.confidence, latency_ms=event.latency_ms, model=event.model,
        )  # fmt: skip

    def add_events(self, events: Iterable) -> list[ShadowPair]:
        """Add events in arrival order; return the pairs they complete, in that order."""
        pairs = []
        for event in events:
            pair = self.add_event(event)
            if pair is not None:
                pairs.append(pair)
        return pairs

    def add(
        self,
        request_id: str,
        ts_ms: int,
        *,
        shadow: bool,
        prediction: str | None = None,
        confidence: float | None = None,
        latency_ms: float | None = None,
        model: str | None = None,
    ) -> ShadowPair | None:
        """Add one event; return the pair it completes, or ``None`` while it waits (or was dropped)."""
        # The hot path of a shadow stream: written out flat, one attribute read per value.
        side = 1 if shadow else 0
        ts_ms = int(ts_ms)
        max_ts = self.max_ts_ms
        if max_ts is None or ts_ms > max_ts:
            self.max_ts_ms = max_ts = ts_ms
            horizon = ts_ms - self.ttl_ms
            heap, joined = self._heap, self._joined_ids
            if (heap and heap[0][0] < horizon) or (joined and joined[next(iter(joined))] < horizon):
                self._expire()
        if request_id in self._joined_ids:
            self.duplicates += 1
            return None
        waiting = self._waiting
        mine, other = waiting[side], waiting[1 - side]
        if request_id in mine:
            self.duplicates += 1
            return None
        partner = other.pop(request_id, None)
        if partner is not None:
            return self._join(request_id, side,
                              (ts_ms, 0, request_id, side, prediction, confidence, latency_ms, model), partner)
        if ts_ms < max_ts - self.ttl_ms:
            self._count_unmatched(side)  # already past its wait on arrival, and no partner is waiting
            return None
        seq = self._seq = self._seq + 1
        record = mine[request_id] = (ts_ms, seq, request_id, side, prediction, confidence, latency_ms, model)
        pending = len(mine) + len(other)
        heap = self._heap
        if pending > self.max_pending:
            # Push and pop the oldest in one step (it may be this very event), skipping stale records.
            record = heapq.heappushpop(heap, record)
            while waiting[record[3]].get(record[2]) is not record:
                record = heapq.heappop(heap)
            del waiting[record[3]][record[2]]
            self._count_unmatched(record[3])
            self.evicted_overflow += 1
        else:
            heapq.heappush(heap, record)
            if len(heap) > 2 * pending + 64:
                self._compact()
        return None

    def flush(self) -> None:
        """Give up every waiting event now (end of input): each is counted as unmatched."""
        self.unmatched_served += len(self._waiting[_SERVED])
        self.unmatched_shadow += len(self._waiting[_SHADOW])
        self._waiting[_SERVED].clear()
        self._waiting[_SHADOW].clear()
        self._heap.clear()

    # -- internals -----------------------------------------------------------------------------------------
    def _join(self, request_id: str, side: int, mine: tuple, partner: tuple) -> ShadowPair:
        served, shadow = (partner, mine) if side == _SHADOW else (mine, partner)
        self.joined += 1
        self._joined_ids[request_id] = max(served[0], shadow[0])
        if len(self._joined_ids) > self.max_pending:
            del self._joined_ids[next(iter(self._joined_ids))]
        return ShadowPair(request_id, served[0], shadow[0], served[4], shadow[4], served[5], shadow[5],
                          served[6], shadow[6], served[7])

    def _count_unmatched(self, side: int) -> None:
        if side == _SERVED:
            self.unmatched_served += 1
        else:
            self.unmatched_shadow += 1

    def _expire(self) -> None:
        horizon = self.max_ts_ms - self.ttl_ms
        heap, waiting = self._heap, self._waiting
        while heap and heap[0][0] < horizon:
            record = heapq.heappop(heap)
            if waiting[record[3]].get(record[2]) is record:
                del waiting[record[3]][record[2]]
                self._count_unmatched(record[3])
        # Recently joined ids past the TTL are no longer needed to recognise duplicates. Join order is close
        # to event-time order; the few out of order leave with the capacity bound instead.
        joined = self._joined_ids
        while joined:
            rid = next(iter(joined))
            if joined[rid] >= horizon:
                break
            del joined[rid]

    def _compact(self) -> None:
        """Rebuild the heap from the waiting events, dropping the stale records of joined requests."""
        self._heap = [*self._waiting[_SERVED].values(), *self._waiting[_SHADOW].values()]
        heapq.heapify(self._heap)

    # -- checkpoints ---------------------------------------------------------------------------------------
    def to_state(self) -> dict:
        """Return the waiting events, remembered joins and counters as JSON-able values."""
        return {
            "ttl_ms": self.ttl_ms, "max_pending": self.max_pending, "shadow_marker": self.shadow_marker,
            "max_ts_ms": self.max_ts_ms, "seq": self._seq,
            "waiting": [list(record) for side in (_SERVED, _SHADOW) for record in self._waiting[side].values()],
            "joined_ids": list(self._joined_ids.items()),
            "counters": {k: v for k, v in self.counters().items() if k != "pending"},
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict) -> ShadowJoiner:
        """Rebuild a joiner from :meth:`to_state`; it continues exactly where the original was."""
        joiner = cls(state["ttl_ms"], state["max_pending"], state["shadow_marker"])
        joiner.max_ts_ms, joiner._seq = state["max_ts_ms"], state["seq"]
        for record in state["waiting"]:
            joiner._waiting[record[3]][record[2]] = tuple(record)
        joiner._compact()
        joiner._joined_ids = {rid: ts for rid, ts in state["joined_ids"]}
        for name, value in state["counters"].items():
            setattr(joiner, name, value)
        return joiner

    def __repr__(self) -> str:
        return (f"ShadowJoiner(ttl_ms={self.ttl_ms}, max_pending={self.max_pending}, "
                f"shadow_marker={self.shadow_marker!r})")


def shadow_summary(pairs: Sequence[ShadowPair], *, min_agreement: float = 0.9, alpha: float = 0.01) -> ShadowSummary:
    """Summarise one window of served/shadow pairs: agreement, confidence and latency differences, KS test.

    Pure: the same pairs always give the same summary. ``pairs`` are the window's joined pairs (e.g. those
    whose served event falls in the window); the counts and value arrays go to
    :func:`detectors.shadow.summarise_counts`, which documents ``min_agreement`` and ``alpha``.

    Examples
    --------
    >>> pairs = [ShadowPair(f"r{i}", i, i, "pos", "pos" if i % 10 else "neg", 0.9, 0.8, 10.0, 14.0)
    ...          for i in range(100)]
    >>> s = shadow_summary(pairs, min_agreement=0.95)
    >>> s.agreement_rate, s.agreement_low, round(s.confidence_diff_mean, 3), s.latency_diff_p95_ms
    (0.9, True, -0.1, 4.0)
    """
    served_errors = sum(p.served_prediction is None for p in pairs)
    shadow_errors = sum(p.shadow_prediction is None for p in pairs)
    both = [p for p in pairs if p.served_prediction is not None and p.shadow_prediction is not None]
    agree = sum(p.served_prediction == p.shadow_prediction for p in both)
    return summarise_counts(
        n=len(pairs), compared=len(both), agree=agree, served_errors=served_errors, shadow_errors=shadow_errors,
        confidences=_paired(pairs, "served_confidence", "shadow_confidence"),
        latencies=_paired(pairs, "served_latency_ms", "shadow_latency_ms"),
        min_agreement=min_agreement, alpha=alpha,
    )  # fmt: skip


def _paired(pairs: Sequence[ShadowPair], served: str, shadow: str) -> np.ndarray:
    """Return an (n, 2) array of the pairs where both values are present and finite."""
    values = np.array([(getattr(p, served), getattr(p, shadow)) for p in pairs], dtype=np.float64).reshape(-1, 2)
    return values[np.isfinite(values).all(axis=1)]


# -- in the pipeline: pairs per served model and window -------------------------------------------------------
# The joiner's counters, in the order of nlpmon_shadow_events_total's `outcome` label (docs/metrics.md).
JOIN_OUTCOMES = ("joined", "unmatched_served", "unmatched_shadow", "duplicates", "evicted_overflow", "no_request_id")
_PAIR_FLUSH = 256  # pair rows buffered before they go through the reservoir (its sample ignores batching)


class _PairWindow:
    """Exact counts of one window's pairs and a seeded uniform sample of their confidences and latencies."""

    __slots__ = ("key", "start_ms", "end_ms", "n", "compared", "agree", "served_errors", "shadow_errors", "buffer",
                 "sample")

    def __init__(self, key: int, start_ms: int, end_ms: int, *, capacity: int, seed: int):
        self.key, self.start_ms, self.end_ms = key, start_ms, end_ms
        self.n = self.compared = self.agree = self.served_errors = self.shadow_errors = 0
        self.buffer: list[tuple] = []
        # Columns: served confidence, shadow confidence, served latency, shadow latency (NaN: unknown).
        self.sample = Reservoir(capacity, 4, seed)

    def add(self, p: ShadowPair) -> None:
        self.n += 1
        served_ok, shadow_ok = p.served_prediction is not None, p.shadow_prediction is not None
        self.served_errors += not served_ok
        self.shadow_errors += not shadow_ok
        if served_ok and shadow_ok:
            self.compared += 1
            self.agree += p.served_prediction == p.shadow_prediction
        self.buffer.append((_f(p.served_confidence), _f(p.shadow_confidence), _f(p.served_latency_ms),
                            _f(p.shadow_latency_ms)))
        if len(self.buffer) >= _PAIR_FLUSH:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            self.sample.add(np.asarray(self.buffer, dtype=np.float64))
            self.buffer = []

    def summary(self, min_agreement: float, alpha: float) -> ShadowSummary:
        self._flush()
        rows = self.sample.rows
        conf, lat = rows[:, 0:2], rows[:, 2:4]
        return summarise_counts(
            n=self.n, compared=self.compared, agree=self.agree, served_errors=self.served_errors,
            shadow_errors=self.shadow_errors, confidences=conf[np.isfinite(conf).all(axis=1)],
            latencies=lat[np.isfinite(lat).all(axis=1)], min_agreement=min_agreement, alpha=alpha,
        )  # fmt: skip

    def state(self) -> list:
        return [self.key, self.start_ms, self.end_ms, self.n, self.compared, self.agree, self.served_errors,
                self.shadow_errors, [list(r) for r in self.buffer], self.sample.state()]

    @classmethod
    def from_state(cls, s: list) -> _PairWindow:
        w = cls.__new__(cls)
        (w.key, w.start_ms, w.end_ms, w.n, w.compared, w.agree, w.served_errors, w.shadow_errors) = s[:8]
        w.buffer = [tuple(r) for r in s[8]]
        w.sample = Reservoir.from_state(s[9])
        return w


def _f(x: float | None) -> float:
    return math.nan if x is None else float(x)


class ShadowWindows:
    """Join the pipeline's events (:class:`ShadowJoiner`) and summarise the pairs per served model and window.

    Time windows have the pipeline's size; a window closes once the joiner's newest event time is past its
    end plus ``window.lateness_seconds`` plus ``shadow.ttl_seconds`` (no partner of its served events can
    still be waiting). Count windows close every ``window.events`` pairs of a model. Served events of models
    outside ``shadow.models`` (when it is set) are not joined at all, so they are never counted unmatched.
    """

    def __init__(self, shadow, window):
        self.cfg, self.window = shadow, window
        self.joiner = ShadowJoiner(int(round(shadow.ttl_seconds * 1000)), shadow.max_pending, shadow.marker)
        self.models = frozenset(shadow.models)
        self._size_ms = max(1, int(round(window.size_seconds * 1000)))
        self._wait_ms = int(round(window.lateness_seconds * 1000)) + self.joiner.ttl_ms
        self._capacity = min(window.reservoir_size, 10_000)
        self.open: dict[tuple[str, int], _PairWindow] = {}
        self.pairs_seen: dict[str, int] = {}  # per model, for count windows
        self.late_pairs: dict[str, int] = {}

    def add_events(self, events) -> list[ShadowResult]:
        """Add a batch of valid events in arrival order; return the results of the windows they closed."""
        out: list[ShadowResult] = []
        joiner, marker, models = self.joiner, self.cfg.marker, self.models
        for e in events:
            if models and e.variant != marker and e.model not in models:
                continue
            before = joiner.max_ts_ms
            pair = joiner.add_event(e)
            if pair is not None:
                out.extend(self._add_pair(pair))
            if self.window.kind == "time" and joiner.max_ts_ms is not None and joiner.max_ts_ms != before:
                out.extend(self._close_due())
        return out

    def _add_pair(self, pair: ShadowPair) -> list[ShadowResult]:
        model = pair.model or ""
        if self.window.kind == "time":
            key = int(window_start_ms(pair.served_ts_ms, self._size_ms))
            if key + self._size_ms + self._wait_ms <= self.joiner.max_ts_ms and (model, key) not in self.open:
                self.late_pairs[model] = self.late_pairs.get(model, 0) + 1
                return []
            start, end = key, key + self._size_ms
        else:
            seen = self.pairs_seen.get(model, 0)
            self.pairs_seen[model] = seen + 1
            key = seen // self.window.events
            start = end = pair.served_ts_ms
        win = self.open.get((model, key))
        if win is None:
            seed = window_seed(self.window.seed, "shadow", model, key)
            win = self.open[(model, key)] = _PairWindow(key, start, end, capacity=self._capacity, seed=seed)
        if self.window.kind == "count":
            win.start_ms, win.end_ms = min(win.start_ms, start), max(win.end_ms, end)
        win.add(pair)
        if self.window.kind == "count" and win.n >= self.window.events:
            return [self._close(model, key, partial=False)]
        return []

    def _close_due(self) -> list[ShadowResult]:
        horizon = self.joiner.max_ts_ms - self._wait_ms
        due = sorted(k for k, w in self.open.items() if w.end_ms <= horizon)
        return [self._close(model, key, partial=False) for model, key in due]

    def _close(self, model: str, key: int, *, partial: bool) -> ShadowResult:
        win = self.open.pop((model, key))
        return ShadowResult(
            model=model, window_kind=self.window.kind, window_start_ms=win.start_ms, window_end_ms=win.end_ms,
            window_seq=0 if self.window.kind == "time" else key, partial=partial,
            late_pairs=self.late_pairs.pop(model, 0), summary=win.summary(self.cfg.min_agreement, self.cfg.alpha),
            joins=self.joiner.counters(),
        )  # fmt: skip

    def flush(self) -> list[ShadowResult]:
        """End of input: give up every waiting event (unmatched), close every open window (``partial``)."""
        self.joiner.flush()
        return [self._close(model, key, partial=True) for model, key in sorted(self.open)]

    @property
    def open_windows(self) -> int:
        return len(self.open)

    def state(self) -> dict:
        return {
            "joiner": self.joiner.to_state(), "open": [[m, w.state()] for (m, _), w in self.open.items()],
            "pairs_seen": dict(self.pairs_seen), "late_pairs": dict(self.late_pairs),
        }  # fmt: skip

    def restore(self, state: dict) -> None:
        joiner = ShadowJoiner.from_state(state["joiner"])
        if (joiner.ttl_ms, joiner.max_pending, joiner.shadow_marker) == (self.joiner.ttl_ms, self.joiner.max_pending,
                                                                         self.joiner.shadow_marker):
            self.joiner = joiner
        else:
            # ttl, capacity or marker changed: keep the counters; the events that were waiting are given up.
            joiner.flush()
            for name in JOIN_OUTCOMES:
                setattr(self.joiner, name, getattr(joiner, name))
        self.open = {}
        for model, w in state["open"]:
            win = _PairWindow.from_state(w)
            self.open[(model, win.key)] = win
        self.pairs_seen = dict(state["pairs_seen"])
        self.late_pairs = dict(state["late_pairs"])
