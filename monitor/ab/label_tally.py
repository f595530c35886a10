"""The parts of the label join (monitor/ab/labels.py) that hold its state: the arrival-ordered pending store,
one prediction window's tally of outcomes, the book of open tallies with their close times, and the
calibration refitted from the latest tallies' labels."""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from collections.abc import Callable

import numpy as np

from detectors.accuracy_estimate import AccuracyEstimate, LabelEvidence, blended_accuracy
from detectors.base import finite_or_none
from detectors.classification import CalibrationTable
from monitor.results import ClassFigures, LabelsResult, WindowResult

__all__ = ["Ordered", "WaitingLabels", "Tally", "TallyBook", "RecentCalibration", "entries_state", "entries_from_state",
           "intern_name", "MAX_CLASSES", "OTHER_CLASS"]

# Classes (predicted or labelled) kept by name per window; the rest are counted as OTHER_CLASS, so label
# events with arbitrary strings cannot grow a window's memory.
MAX_CLASSES = 100
OTHER_CLASS = "__other__"
_MAX_INTERNED = 10_000  # class names shared between pending predictions (memory), at most this many


class Ordered:
    """A dict in arrival order whose oldest live entry is found in O(1) (a deque of the entries beside it).

    Each entry is a tuple whose first item is its time and whose last item is its key; a deque item is stale
    once the dict no longer holds that very tuple (joined, replaced). The deque is rebuilt from the dict when
    stale items outnumber live ones. A plain dict would not do: ``next(iter(d))`` after many deletions at its
    front walks every deleted slot.
    """

    __slots__ = ("d", "q")

    def __init__(self):
        self.d: dict = {}
        self.q: deque = deque()

    def __len__(self) -> int:
        return len(self.d)

    def put(self, entry: tuple) -> None:
        d = self.d
        d[entry[-1]] = entry
        q = self.q
        q.append(entry)
        if len(q) > 2 * len(d) + 64:
            self.q = deque(d.values())

    def oldest(self) -> tuple | None:
        d, q = self.d, self.q
        while q:
            e = q[0]
            if d.get(e[-1]) is e:
                return e
            q.popleft()
        return None

    def pop_oldest(self) -> tuple:
        e = self.oldest()
        del self.d[e[-1]]
        self.q.popleft()
        return e

    def live(self, entry: tuple, horizon: int) -> bool:
        """Whether a held ``entry`` is at or after ``horizon``; one before it is dropped (as if swept already)."""
        if entry[0] >= horizon:
            return True
        del self.d[entry[-1]]
        return False

    def sweep(self, horizon: int) -> int:
        """Forget the oldest entries older than ``horizon``; return how many (memory only: the join checks an
        entry's time on lookup, so one past the horizon that is still held counts as gone all the same)."""
        n = 0
        while True:
            e = self.oldest()
            if e is None or e[0] >= horizon:
                return n
            self.pop_oldest()
            n += 1


class WaitingLabels(Ordered):
    """Labels waiting for their prediction, ``(ts_ms, label, key)`` in arrival order."""

    __slots__ = ()

    def wait(self, entry: tuple, counts: dict, *, clock: int, delay: int, max_pending: int) -> None:
        """Let a label wait for its prediction (its time is within ``delay`` of the join ``clock``); a second
        live label of the request is a ``duplicate``, one past its delay was ``unknown``; beyond
        ``max_pending`` the oldest is given up (``evicted``, or ``unknown`` when past its delay anyway)."""
        key = entry[-1]
        w = self.d.get(key)
        if w is not None:
            if w[0] + delay >= clock:
                counts["duplicate"] += 1
                return
            del self.d[key]
            counts["unknown"] += 1
        self.put(entry)
        if len(self.d) > max_pending:
            old = self.pop_oldest()
            counts["evicted" if old[0] + delay >= clock else "unknown"] += 1


def intern_name(names: dict, name: str | None) -> str | None:
    """``name``, shared through ``names`` (class names repeat across pending predictions: memory)."""
    shared = names.get(name)
    if shared is None and name is not None and len(names) < _MAX_INTERNED:
        shared = names[name] = name
    return shared if shared is not None else name


class Tally:
    """One prediction window's label counts (exact) and the calibration sums of its labelled pairs."""

    __slots__ = ("key", "close_at", "predictions", "with_rid", "labelled", "correct", "duplicates", "evicted",
                 "predicted", "labels", "hits", "cal_n", "cal_ok", "cal_conf", "estimates")

    def __init__(self, key: tuple, close_at: int, bins: int):
        self.key, self.close_at = key, close_at
        self.predictions = self.with_rid = self.labelled = self.correct = self.duplicates = self.evicted = 0
        # Each closed window's [events, estimate, low, high, reliable] (the interval's three None without one):
        # with window.by_segment one per segment, blended only when the result is made (see ``blended``).
        self.estimates: list[list] = []
        self.predicted: dict[str, int] = {}
        self.labels: dict[str, int] = {}
        self.hits: dict[str, int] = {}
        self.cal_n, self.cal_ok, self.cal_conf = [0] * bins, [0] * bins, [0.0] * bins

    def add_pair(self, cls: str | None, label: str, conf: float | None, bin_edges: list) -> None:
        """Count one labelled prediction (``cls`` None: an error event, labelled and wrong)."""
        correct = cls == label
        self.labelled += 1
        predicted, labels = self.predicted, self.labels
        if cls is not None:
            c = cls if cls in predicted or cls in labels else _bounded(predicted, labels, cls)
            predicted[c] = predicted.get(c, 0) + 1
            if correct:
                self.correct += 1
                self.hits[c] = self.hits.get(c, 0) + 1
        lab = label if label in labels or label in predicted else _bounded(predicted, labels, label)
        labels[lab] = labels.get(lab, 0) + 1
        if conf is not None:
            i = bisect.bisect_left(bin_edges, conf)  # detectors.classification's binning: edges[i] < c <= edges[i+1]
            self.cal_n[i] += 1
            self.cal_ok[i] += correct
            self.cal_conf[i] += conf

    def add_estimate(self, estimate: float, events: int, interval: AccuracyEstimate | None = None) -> None:
        """Keep a closed window's label-free estimate (and its ``interval``); with window.by_segment each
        segment's window of the same time window brings its own, and the labels result (per model and version)
        gets their mean weighted by events (the interval's ends likewise; reliable when all are)."""
        lo, hi, ok = (interval.low, interval.high, bool(interval.reliable)) if interval is not None else (None,) * 3
        self.estimates.append([max(events, 1), estimate, lo, hi, ok])

    def blended(self) -> tuple[float | None, float | None, float | None, bool | None]:
        """(estimate, low, high, reliable) of the kept estimates, the same whatever order they came in.

        The segments' windows of one time window close in an order that depends on how the records were
        batched (a restart batches them differently): exact sums (``math.fsum``) make the means independent
        of it, where a running mean would differ in its last bits (exactly-once, docs/kafka.md).
        """
        parts = self.estimates
        with_interval = [p for p in parts if p[2] is not None]
        ok = all(p[4] for p in with_interval) if with_interval else None
        return _weighted(parts, 1), _weighted(with_interval, 2), _weighted(with_interval, 3), ok

    def result(self, size_ms: int, *, partial: bool) -> LabelsResult:
        """The window's labels result (its predictions with a request id and no label count as expired)."""
        model, version, start = self.key
        hits, predicted, labels = self.hits, self.predicted, self.labels
        estimate, low, high, reliable = self.blended()
        classes = tuple(ClassFigures(c, predicted.get(c, 0), labels.get(c, 0), hits.get(c, 0),
                                     _ratio(hits.get(c, 0), predicted.get(c, 0)), _ratio(hits.get(c, 0), labels.get(c, 0)))
                        for c in sorted(predicted.keys() | labels.keys()))  # fmt: skip
        return LabelsResult(
            model=model, version=version, window_start_ms=start, window_end_ms=start + size_ms, partial=partial,
            predictions=self.predictions, with_request_id=self.with_rid, labelled=self.labelled,
            accuracy=_ratio(self.correct, self.labelled), classes=classes, duplicates=self.duplicates,
            unmatched=self.with_rid - self.labelled, expired=self.expired, evicted=self.evicted,
            estimated_accuracy=estimate, estimated_accuracy_low=low, estimated_accuracy_high=high,
            estimate_reliable=reliable,
        )  # fmt: skip

    @property
    def expired(self) -> int:
        return self.with_rid - self.labelled - self.evicted

    def state(self) -> list:
        # Items 8, 15 to 18 (the blend, as checkpoints before issue 21's exactly-once fix held it) stay for readers
        # of the old layout; item 19 holds the estimates themselves.
        estimate, low, high, reliable = self.blended()
        return [list(self.key), self.close_at, self.predictions, self.with_rid, self.labelled, self.correct,
                self.duplicates, self.evicted, estimate, self.predicted, self.labels, self.hits, self.cal_n,
                self.cal_ok, self.cal_conf, sum(p[0] for p in self.estimates), low, high, reliable, self.estimates]

    @classmethod
    def from_state(cls, s: list) -> Tally:
        t = cls.__new__(cls)
        t.key, t.close_at = tuple(s[0]), s[1]
        (t.predictions, t.with_rid, t.labelled, t.correct, t.duplicates, t.evicted) = s[2:8]
        t.predicted, t.labels, t.hits = dict(s[9]), dict(s[10]), dict(s[11])
        t.cal_n, t.cal_ok, t.cal_conf = list(s[12]), list(s[13]), list(s[14])
        if len(s) > 19:
            t.estimates = [list(p) for p in s[19]]
        elif s[8] is None:
            t.estimates = []
        else:  # an older checkpoint: the blend so far counts as one estimate of its events
            n = s[15] if len(s) > 15 else 0  # checkpoints from before segments: it weighs nothing beside another
            lo, hi, ok = s[16:19] if len(s) > 16 else (None, None, None)  # ... before intervals
            t.estimates = [[n, s[8], lo, hi, None if lo is None else ok is not False]]
        return t


class RecentCalibration:
    """Per model, the calibration sums of its latest closed tallies with labels: the reliability table refitted
    from realised labels, and the label evidence of the estimator (``[labels]``, docs/results.md).

    Each entry is ``(window start, close_at, cal_n, cal_ok, cal_conf)``; ``windows`` entries count, and a few
    more are kept (``keep``) for the windows that close after later label periods did.
    """

    __slots__ = ("bins", "windows", "keep", "recent")

    def __init__(self, bins: int, windows: int, keep: int | None = None):
        self.bins, self.windows = bins, windows
        self.keep = max(keep or windows, windows)
        self.recent: dict[str, deque] = {}  # model -> entries, oldest first

    def add(self, model: str, t: Tally) -> None:
        recent = self.recent.get(model)
        if recent is None:
            recent = self.recent[model] = deque(maxlen=self.keep)
        if t.labelled:
            recent.append((t.key[2], t.close_at, t.cal_n, t.cal_ok, t.cal_conf))

    def table(self, model: str) -> CalibrationTable | None:
        """The reliability table of ``model``'s labelled pairs in its latest closed tallies (None without any)."""
        recent = list(self.recent.get(model) or ())[-self.windows:]
        if not recent:
            return None
        n = [sum(col) for col in zip(*(r[2] for r in recent))]
        ok = [sum(col) for col in zip(*(r[3] for r in recent))]
        conf = [sum(col) for col in zip(*(r[4] for r in recent))]
        if not any(n):
            return None
        return CalibrationTable(self.bins, tuple(n), tuple(o / c if c else None for o, c in zip(ok, n)),
                                tuple(s / c if c else None for s, c in zip(conf, n)))

    def evidence(self, model: str, end_ms: int, also: list, *, decay: float) -> tuple[list, list]:
        """Decayed (labelled, correct) per bin of ``model``'s latest ``windows`` tallies whose label period
        ended by ``end_ms`` (closed ones, and those of ``also``: tallies not handed out yet); the newest
        weighs 1, the one before ``decay``, and so on."""
        entries = [r for r in self.recent.get(model) or () if r[1] <= end_ms]
        entries += [(t.key[2], t.close_at, t.cal_n, t.cal_ok, t.cal_conf) for t in also]
        # Newest first; equal starts (the model's versions) by their close and sums, not by whether a tally was
        # closed yet when the window closed (that depends on the batching): the decay's ages are then the same.
        entries.sort(key=lambda r: (r[0], r[1], list(r[2]), list(r[3]), list(r[4])), reverse=True)
        n, ok = [0.0] * self.bins, [0.0] * self.bins
        for age, r in enumerate(entries[:self.windows]):
            w = decay**age
            for b in range(min(self.bins, len(r[2]))):
                n[b] += w * r[2][b]
                ok[b] += w * r[3][b]
        return n, ok

    def state(self) -> dict:
        return {m: [[list(a), list(b), list(c), start, close_at] for start, close_at, a, b, c in r]
                for m, r in self.recent.items()}  # fmt: skip

    def restore(self, state: dict) -> None:
        # Checkpoints from before the estimator's evidence have no window start: they count as the oldest.
        self.recent = {m: deque(((*(e[3:5] if len(e) > 3 else (-(2**62), -(2**62))), e[0], e[1], e[2]) for e in r),
                                maxlen=self.keep) for m, r in state.items()}  # fmt: skip


class TallyBook:
    """The open tallies of a label join by (model, version, window start), the heap of their close times,
    and the calibration of the latest closed ones (``labels.refresh_calibration``).

    ``tallies`` is read and written by the join's hot path directly; it stays the same dict object for the
    book's life (``restore`` refills it), so the join may hold it in a local.
    """

    __slots__ = ("bins", "size_ms", "refresh", "tallies", "due", "calibration", "decay", "prior_weight", "min_labels")

    def __init__(self, *, bins: int, windows: int, size_ms: int, refresh: bool, keep: int | None = None,
                 decay: float = 0.8, prior_weight: float = 100.0, min_labels: float = 200.0):
        self.bins, self.size_ms, self.refresh = bins, size_ms, refresh
        self.decay, self.prior_weight, self.min_labels = decay, prior_weight, min_labels
        self.tallies: dict[tuple, Tally] = {}
        self.due: list[tuple[int, tuple]] = []  # (close_at, tally key)
        self.calibration = RecentCalibration(bins, windows, keep)

    def open(self, tkey: tuple, close_at: int) -> Tally:
        """The tally of ``tkey``, opened (closing at ``close_at``) when it has none."""
        t = self.tallies.get(tkey)
        if t is None:
            t = self.tallies[tkey] = Tally(tkey, close_at, self.bins)
            heapq.heappush(self.due, (close_at, tkey))
        return t

    def close_due(self, close_ms: int) -> list[LabelsResult]:
        """Close the tallies whose close time ``close_ms`` has reached; their results, oldest first."""
        due, out = self.due, []
        while due and due[0][0] <= close_ms:
            _, key = heapq.heappop(due)
            if key in self.tallies:
                out.append(self._close(key, partial=False))
        return out

    def close_all(self) -> list[LabelsResult]:
        """Close every open tally now (``partial``: its label period was not over)."""
        out = [self._close(key, partial=True) for key in sorted(self.tallies)]
        self.due = []
        return out

    def _close(self, key: tuple, *, partial: bool) -> LabelsResult:
        t = self.tallies.pop(key)
        self.calibration.add(key[0], t)
        return t.result(self.size_ms, partial=partial)

    def evidence(self, result: WindowResult) -> LabelEvidence | None:
        """The realised labels behind a closed window's estimate: the model's latest tallies whose label period
        ended by the window's end, a function of the record sequence alone (a tally's pairs are final once its
        period ended; the pipeline adds a chunk's labels before it closes the chunk's windows). None without
        ``refresh_calibration``."""
        if not self.refresh or result.window_end_ms is None:
            return None
        model, end = result.model, result.window_end_ms
        also = [t for t in self.tallies.values() if t.key[0] == model and t.close_at <= end and t.labelled]
        n, ok = self.calibration.evidence(model, end, also, decay=self.decay)
        return LabelEvidence(tuple(n), tuple(ok), self.prior_weight, self.min_labels)

    def estimate(self, result: WindowResult, confidences, evidence: LabelEvidence) -> AccuracyEstimate | None:
        """The estimate from realised labels alone (no re-evaluation table): a calibrated prior, updated."""
        c = np.asarray(confidences, dtype=np.float64)
        c = c[np.isfinite(c)]
        return blended_accuracy(c, None, evidence, shifted=result.inputs_shifted) if c.size else None

    def window_estimate(self, result: WindowResult, estimate: float | None, interval=None) -> None:
        """Keep a closed prediction window's estimate (and its interval) in its tally (see ``LabelJoin``)."""
        if result.window_kind != "time":
            return
        t = self.tallies.get((result.model, result.version, result.window_start_ms))
        estimate = None if estimate is None else finite_or_none(estimate)
        if t is not None and estimate is not None:
            t.add_estimate(estimate, result.events, interval)

    def state(self) -> dict:
        return {"tallies": [t.state() for t in self.tallies.values()], "recent": self.calibration.state()}

    def restore(self, state: dict) -> None:
        self.tallies.clear()
        for s in state["tallies"]:
            t = Tally.from_state(s)
            self.tallies[t.key] = t
        self.due = [(t.close_at, k) for k, t in self.tallies.items()]
        heapq.heapify(self.due)
        self.calibration.restore(state["recent"])


def entries_state(preds: Ordered, labels: Ordered, matched: Ordered) -> dict:
    """The join's waiting entries as msgpack-able lists, in arrival order (eviction order survives)."""
    return {
        "preds": [[k[0], k[1], ts, list(tk), cls, conf] for ts, tk, cls, conf, k in preds.d.values()],
        "labels": [[k[0], k[1], ts, label] for ts, label, k in labels.d.values()],
        "matched": [[k[0], k[1], dl, list(tk)] for dl, tk, k in matched.d.values()],
    }  # fmt: skip


def entries_from_state(state: dict, intern: Callable) -> tuple[Ordered, Ordered, Ordered]:
    """Put back :func:`entries_state`: (predictions, labels, matched); class names through ``intern``."""
    preds, labels, matched = Ordered(), WaitingLabels(), Ordered()
    for m, rid, ts, tk, cls, conf in state["preds"]:
        preds.put((ts, tuple(tk), intern(cls), conf, (m, rid)))
    for m, rid, ts, label in state["labels"]:
        labels.put((ts, label, (m, rid)))
    for m, rid, dl, tk in state["matched"]:
        matched.put((dl, tuple(tk), (m, rid)))
    return preds, labels, matched


def _bounded(predicted: dict, labels: dict, name: str) -> str:
    if name in predicted or name in labels or len(predicted.keys() | labels.keys()) < MAX_CLASSES:
        return name
    return OTHER_CLASS


def _weighted(parts: list, i: int) -> float | None:
    """The events-weighted mean of item ``i`` of ``parts`` (None without any), exactly rounded: independent of
    their order. One part is its own mean (exactly)."""
    if len(parts) <= 1:
        return parts[0][i] if parts else None
    n = math.fsum(p[0] for p in parts)
    if n <= 0:
        return parts[-1][i]
    return math.fsum(p[0] * p[i] for p in parts) / n


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None
