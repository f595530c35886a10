"""Realised accuracy: join predictions with the label events that arrive later, per prediction window.

The true label of a prediction seldom travels with it: it comes minutes or days later (a correction, a review,
a chargeback) as a label event, ``{"kind": "label", "model", "request_id", "label", "ts"}`` (docs/events.md).
:class:`LabelJoin` remembers each prediction that has a ``request_id`` compactly (event time, its window,
predicted class, confidence; never text) for ``labels.max_delay_seconds`` of event time, pairs it with its
label in whichever order the two arrive, and tallies each prediction window. A window's tally becomes a
:class:`~monitor.results.LabelsResult` once its label period is over: the partition's prediction time passed
the window's end plus the delay (or plus ``window.lateness_seconds`` when that is longer, so that the
window's own result, and its label-free estimate, came first).

Time is event time only, as in the shadow joiner, so replaying a log gives the same results as consuming it
live. Two clocks, both functions of the record sequence: the *join clock*, the newest event time of the
partition's predictions and labels, decides whether an entry is past its delay; the *close clock*, the newest
prediction time (and the pipeline's idle advances), closes tallies, so labels stamped ahead of the
predictions cannot close a window's tally before the window itself. Every decision is made at the record's
position: an entry past its delay is treated as gone whether or not it has been swept from memory yet, and a
tally is closed for new predictions from the record that moves the close clock past it, although
:meth:`LabelJoin.close_due` hands it out only when the pipeline asks; so batching and sweeping never change a
result.
"""

from __future__ import annotations

import functools
from collections import deque
from itertools import repeat

import numpy as np

from detectors.classification import CalibrationTable
from monitor.ab.label_tally import (
    MAX_CLASSES,
    OTHER_CLASS,
    Ordered,
    Tally,
    TallyBook,
    WaitingLabels,
    entries_from_state,
    entries_state,
    intern_name,
)  # fmt: skip
from monitor.results import LabelsResult, WindowResult

__all__ = ["LabelJoin", "JOIN_OUTCOMES", "MAX_CLASSES", "OTHER_CLASS"]

# The join's counters, in the order of nlpmon_label_join_events_total's `outcome` label (docs/metrics.md).
JOIN_OUTCOMES = ("matched", "duplicate", "unknown", "late", "expired", "evicted")


class LabelJoin:
    """Join prediction events with label events by (model, ``request_id``); tally realised accuracy per window.

    A prediction with a ``request_id`` waits ``max_delay_ms`` of event time for its label; a label whose
    prediction has not arrived yet waits as long for it. At most ``max_pending`` of each are held; beyond
    that the oldest (by arrival) is given up and counted ``evicted``. Outcomes (:data:`JOIN_OUTCOMES`, cumulative):
    ``matched``; ``duplicate`` (a second label of a matched or waiting request, or a second prediction with
    the same id: the first one wins); ``unknown`` (a label whose prediction never came within the delay);
    ``late`` (a label that came past the delay: after its prediction's delay, or already more than the delay
    behind the join clock); ``expired`` (a prediction whose label did not come in time, counted when its
    window's tally closes); ``evicted``.

    Parameters
    ----------
    max_delay_ms : int
        How long, in event-time milliseconds, a prediction waits for its label (and a label for its prediction).
    max_pending : int
        Most predictions held at once, and most labels (and most matched ids kept to recognise duplicates).
    size_ms, lateness_ms : int
        The prediction windows' size and lateness (``[window]``): a tally closes at its window's end plus
        ``max(max_delay_ms, lateness_ms)``.
    bins, calibration_windows, refresh_calibration
        The calibration of realised labels (``[labels]``; see :class:`~monitor.ab.label_tally.TallyBook`).

    Examples
    --------
    >>> from monitor.ingest.events import Event, LabelEvent
    >>> join = LabelJoin(max_delay_ms=60_000, max_pending=1000, size_ms=10_000)
    >>> join.add_prediction(Event(ts_ms=1_000, model="m", version="1", prediction="pos", request_id="r1"))
    >>> join.add_label(LabelEvent(ts_ms=30_000, model="m", request_id="r1", label="pos"))
    >>> join.add_label(LabelEvent(ts_ms=31_000, model="m", request_id="r9", label="neg"))  # waits for r9
    >>> join.add_prediction(Event(ts_ms=75_000, model="m", version="1", prediction="neg"))  # the clock passes 70 s
    >>> [r] = join.close_due()  # window [0 s, 10 s) + 60 s of delay is over
    >>> r.window_start_ms, r.predictions, r.labelled, r.accuracy, join.counts["matched"], join.pending
    (0, 1, 1, 1.0, 1, 1)
    """

    def __init__(self, *, max_delay_ms: int, max_pending: int, size_ms: int, lateness_ms: int = 0, bins: int = 10,
                 calibration_windows: int = 12, refresh_calibration: bool = False, **estimator):
        if max_delay_ms < 0 or max_pending < 1 or size_ms < 1 or lateness_ms < 0 or bins < 2 or calibration_windows < 1:
            raise ValueError("max_delay_ms and lateness_ms must be at least 0; max_pending, size_ms and "
                             "calibration_windows at least 1; bins at least 2")
        self.max_delay_ms, self.max_pending, self.size_ms = int(max_delay_ms), int(max_pending), int(size_ms)
        self.wait_ms = max(self.max_delay_ms, int(lateness_ms))
        self.bins, self.calibration_windows = int(bins), int(calibration_windows)
        self.refresh_calibration = bool(refresh_calibration)
        # The interior bin edges of detectors.classification (np.linspace), so the refitted table bins alike.
        self._edges = [float(x) for x in np.linspace(0.0, 1.0, self.bins + 1)[1:-1]]
        self.clock_ms = self.close_ms = self._next_sweep_ms = -(2**62)
        self._sweep_every_ms = max(1, self.max_delay_ms // 100)
        self._last: tuple | None = None  # (window start, model, version, tally) of the latest prediction
        # (model, request_id) -> entry; the entry's last item is its key (see label_tally.Ordered).
        self._preds = Ordered()  # (ts_ms, tally key, predicted class or None, confidence or None, key)
        self._labels = WaitingLabels()  # (ts_ms, label, key)
        self._matched = Ordered()  # (deadline_ms, tally key, key): labelled requests, to recognise duplicates
        # Closed tallies kept for the estimator beyond calibration_windows: windows close up to about two
        # waits after the label periods that ended by their end (lateness, idle streams).
        keep = self.calibration_windows + 2 + 2 * -(-self.wait_ms // self.size_ms)
        # The open tallies, their close times, and the realised labels the estimator learns from (public: the
        # pipeline asks it for a closed window's evidence, TallyBook.evidence).
        self.book = TallyBook(bins=self.bins, windows=self.calibration_windows, size_ms=self.size_ms,
                               refresh=self.refresh_calibration, keep=min(keep, 10_000), **estimator)
        self._tallies = self.book.tallies  # the same dict for the join's life (TallyBook.restore refills it)
        self._names: dict[str, str] = {}
        self.counts = dict.fromkeys(JOIN_OUTCOMES, 0)

    @classmethod
    def from_config(cls, config) -> LabelJoin:
        lab, w = config.labels, config.window
        return cls(max_delay_ms=int(round(lab.max_delay_seconds * 1000)), max_pending=lab.max_pending,
                   size_ms=max(1, int(round(w.size_seconds * 1000))), lateness_ms=int(round(w.lateness_seconds * 1000)),
                   bins=lab.calibration_bins, calibration_windows=lab.calibration_windows,
                   refresh_calibration=lab.refresh_calibration, decay=lab.calibration_decay,
                   prior_weight=lab.calibration_prior_weight, min_labels=lab.reliable_min_labels)

    @property
    def pending(self) -> int:
        """Predictions and labels waiting for their partner now."""
        return len(self._preds) + len(self._labels)

    def counters(self) -> dict[str, int]:
        return {**self.counts, "pending": self.pending}

    # -- feeding ----------------------------------------------------------------------------------------------
    def add_chunk(self, events, positions, labels) -> None:
        """Add a chunk's prediction events (at record ``positions``) and its ``(position, LabelEvent)`` labels
        in record order.

        The same decisions as :meth:`add_prediction` and :meth:`add_label` one event at a time, with the common
        case of a prediction written out here on locals (a new request id, in the window of the previous
        prediction, nothing waiting for it, room left); every other case goes through :meth:`add_prediction`.
        """
        size, delay, max_pending, names = self.size_ms, self.max_delay_ms, self.max_pending, self._names
        preds, md, ld = self._preds, self._matched.d, self._labels.d
        pd = preds.d
        clock, close, next_sweep, last = self.clock_ms, self.close_ms, self._next_sweep_ms, self._last
        n_labels, li = len(labels), 0
        label_at = labels[0][0] if labels else -1
        for e, pos in zip(events, positions.tolist() if labels else repeat(-2)):
            while 0 <= label_at < pos:  # label events before this prediction
                self.clock_ms, self.close_ms = clock, close
                self.add_label(labels[li][1])
                clock, next_sweep = self.clock_ms, self._next_sweep_ms
                li += 1
                label_at = labels[li][0] if li < n_labels else -1
            ts = e.ts_ms
            t = None
            if ts < next_sweep and last is not None and last[0] == ts - ts % size and last[1] == e.model \
                    and last[2] == e.version:
                c2 = close if ts <= close else ts
                if last[3].close_at > c2:
                    t = last[3]
            if t is not None:
                rid = e.request_id
                if rid is None:
                    clock, close = (clock if ts <= clock else ts), c2
                    t.predictions += 1
                    continue
                if e.error is None:
                    key = (e.model, rid)
                    cls = names.get(e.prediction)
                    c1 = clock if ts <= clock else ts
                    if (cls is not None and key not in md and key not in pd and (not ld or key not in ld)
                            and ts + delay >= c1 and len(pd) < max_pending):
                        clock, close = c1, c2
                        t.predictions += 1
                        t.with_rid += 1
                        entry = (ts, t.key, cls, e.confidence, key)
                        pd[key] = entry
                        q = preds.q
                        q.append(entry)
                        if len(q) > 2 * len(pd) + 64:
                            preds.q = deque(pd.values())
                        continue
            self.clock_ms, self.close_ms = clock, close
            self.add_prediction(e)
            clock, close, next_sweep, last = self.clock_ms, self.close_ms, self._next_sweep_ms, self._last
        self.clock_ms, self.close_ms = clock, close
        for _, le in labels[li:]:
            self.add_label(le)

    def close_due(self) -> list[LabelsResult]:
        """Close the tallies the close clock has passed; return their results (oldest label period first)."""
        return self._closed(self.book.close_due(self.close_ms))

    def advance(self, ts_ms: int) -> list[LabelsResult]:
        """Event time has reached ``ts_ms`` without an event (the pipeline's idle advance)."""
        if ts_ms > self.clock_ms:
            self.clock_ms = ts_ms
            if ts_ms >= self._next_sweep_ms:
                self._sweep_all(ts_ms)
        self.close_ms = max(self.close_ms, ts_ms)
        return self.close_due()

    def add_prediction(self, e) -> None:
        # The hot path (every prediction of the partition): written out flat, with the latest tally cached.
        ts = e.ts_ms
        if ts > self.clock_ms:  # the join clock is never behind the close clock
            self.clock_ms = self.close_ms = ts
            if ts >= self._next_sweep_ms:
                self._sweep_all(ts)
        elif ts > self.close_ms:
            self.close_ms = ts
        clock, delay = self.clock_ms, self.max_delay_ms
        start = ts - ts % self.size_ms
        last = self._last
        if last is not None and last[0] == start and last[1] == e.model and last[2] == e.version and last[3].close_at > self.close_ms:
            t = last[3]
        else:
            close_at = start + self.size_ms + self.wait_ms
            if close_at <= self.close_ms:
                return  # its window's label period is over: a prediction later than that is in no tally
            t = self.book.open((e.model, e.version, start), close_at)
            self._last = (start, e.model, e.version, t)
        t.predictions += 1
        rid = e.request_id
        if rid is None:
            return
        key = (e.model, rid)
        m = self._matched.d.get(key)
        p = self._preds.d.get(key)
        if (m is not None and m[0] >= clock) or (p is not None and self._preds.live(p, clock - self.max_delay_ms)):
            self.counts["duplicate"] += 1
            return
        t.with_rid += 1
        if e.error is not None:
            cls = None
        else:
            cls = e.prediction
            shared = self._names.get(cls)
            cls = shared if shared is not None else intern_name(self._names, cls)
        labels = self._labels.d
        if labels:
            waiting = labels.pop(key, None)
            if waiting is not None:
                if waiting[0] + delay >= clock and abs(waiting[0] - ts) <= delay:
                    self._match(t, key, pred=(ts, t.key, cls, e.confidence), label=waiting[1])
                    return
                self.counts["unknown"] += 1  # it waited longer than the delay for this prediction
        if ts + delay < clock:
            return  # already past its delay on arrival: expired when its tally closes
        preds = self._preds
        preds.put((ts, t.key, cls, e.confidence, key))
        if len(preds.d) > self.max_pending:
            old = preds.pop_oldest()
            t_old = self._tallies.get(old[1])
            if old[0] + delay >= clock and t_old is not None:  # still live (one past its delay is just expired)
                t_old.evicted += 1
                self.counts["evicted"] += 1

    def add_label(self, le) -> None:
        ts = le.ts_ms
        if ts > self.clock_ms:
            self.clock_ms = ts
            if ts >= self._next_sweep_ms:
                self._sweep_all(ts)
        clock, delay = self.clock_ms, self.max_delay_ms
        key = (le.model, le.request_id)
        m = self._matched.d.get(key)
        if m is not None and m[0] >= clock:
            self.counts["duplicate"] += 1
            t = self._tallies.get(m[1])  # open (it closes after its predictions' deadlines) unless restored
            if t is not None:  # under a longer delay than the checkpoint's
                t.duplicates += 1
            return
        p = self._preds.d.pop(key, None)
        if p is not None:
            t = self._tallies.get(p[1])
            if p[0] + delay >= clock and t is not None:
                self._match(t, key, pred=p, label=le.label)
                return
            # Past its delay: treated exactly as if it had been swept already (its tally counts it expired).
        if ts + delay < clock:
            self.counts["late"] += 1  # already more than the delay behind the join clock: it cannot wait
            return
        self._labels.wait((ts, le.label, key), self.counts, clock=clock, delay=delay, max_pending=self.max_pending)

    def window_estimate(self, result: WindowResult, estimate: float | None, interval=None) -> None:
        """Keep the estimate (and interval) of a closed prediction window for its labels result (TallyBook)."""
        self.book.window_estimate(result, estimate, interval)

    def flush(self) -> list[LabelsResult]:
        """End of input: close every tally now; those whose label period was not over are ``partial``."""
        out = self.close_due() + self._closed(self.book.close_all())
        self.counts["unknown"] += len(self._labels)
        self._preds, self._labels = Ordered(), WaitingLabels()
        return out

    # -- calibration refreshed from realised labels -------------------------------------------------------------
    def calibration_table(self, model: str) -> CalibrationTable | None:
        """The reliability table of ``model``'s labelled pairs in its latest closed tallies (None without any)."""
        return self.book.calibration.table(model)

    # -- internals ----------------------------------------------------------------------------------------------
    def _match(self, t: Tally, key: tuple, *, pred: tuple, label: str) -> None:
        """Pair a prediction (its pending entry: time, tally key, class or None, confidence) with its label."""
        cls = pred[2]
        t.add_pair(cls, label, pred[3], self._edges)
        self.counts["matched"] += 1
        matched = self._matched
        matched.put((pred[0] + self.max_delay_ms, t.key, key))
        if len(matched.d) > self.max_pending:
            matched.pop_oldest()  # only duplicates of the oldest could go unrecognised

    def _sweep_all(self, ts: int) -> None:
        # Sweeping only frees memory (a held entry past its delay counts as gone anyway), so it runs once per
        # 1% of the delay of event time, not at every event; its schedule is part of the state (eviction order).
        self._next_sweep_ms = ts + self._sweep_every_ms
        horizon = ts - self.max_delay_ms
        self._preds.sweep(horizon)
        self.counts["unknown"] += self._labels.sweep(horizon)  # labels whose prediction never came
        self._matched.sweep(ts)

    def _closed(self, results: list[LabelsResult]) -> list[LabelsResult]:
        if results:
            self._last = None  # its tally may be among them (a cache only: the next prediction looks it up)
            self.counts["expired"] += sum(r.expired for r in results)
        return results

    # -- checkpoints --------------------------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything the join holds, as msgpack-able lists, in arrival order (eviction order survives)."""
        return {
            "clock_ms": self.clock_ms, "close_ms": self.close_ms, "next_sweep_ms": self._next_sweep_ms,
            "counts": dict(self.counts),
            **entries_state(self._preds, self._labels, self._matched),  # preds, labels, matched
            **self.book.state(),  # tallies, recent
        }  # fmt: skip

    def restore(self, state: dict) -> None:
        """Put back :meth:`state`; a changed delay or window size applies to the tallies from here on."""
        self.clock_ms, self.close_ms, self._next_sweep_ms = state["clock_ms"], state["close_ms"], state["next_sweep_ms"]
        self._last = None
        self.counts = {**dict.fromkeys(JOIN_OUTCOMES, 0), **state["counts"]}
        self.book.restore(state)
        self._preds, self._labels, self._matched = entries_from_state(state, functools.partial(intern_name, self._names))

