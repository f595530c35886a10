"""What a window keeps so that a person can see what changed: the pure statistics of the evidence.

A window's evidence (``monitor.results.WindowEvidence``) is made of these frozen objects: a compact quantile
sketch per numeric series (a feature, the confidence, a class probability), and the tokens whose frequency
rose or fell most against the reference. Nothing here holds text beyond a token that passed the privacy floor
(seen in at least ``k`` distinct events), and nothing does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from detectors.base import as_dict

__all__ = ["QUANTILE_GRID", "QuantileSketch", "TokenShift", "quantile_sketch", "token_shifts", "SpaceSaving",
           "TopExemplars", "Standardiser", "PRIOR_EVENTS"]

# The fixed grid every sketch is taken at (reference and window alike, so any two overlay): 1 %, 2.5 %, 5 %,
# every 5 % to 95 %, 97.5 %, 99 %; min and max are kept beside it. 23 numbers: a few hundred bytes in JSON.
QUANTILE_GRID: tuple[float, ...] = (0.01, 0.025, *(round(0.05 * i, 2) for i in range(1, 20)), 0.975, 0.99)
_GRID = np.array(QUANTILE_GRID)


@dataclass(frozen=True, slots=True)
class QuantileSketch:
    """A series summarised: its finite values' count, min, max and quantiles at :data:`QUANTILE_GRID`.

    ``quantiles`` is empty when ``n`` is 0; ``min``/``max`` are then ``None``.
    """

    n: int
    min: float | None
    max: float | None
    quantiles: tuple[float, ...]

    def to_dict(self) -> dict:
        return as_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "QuantileSketch":
        return cls(n=int(d["n"]), min=d["min"], max=d["max"], quantiles=tuple(float(q) for q in d["quantiles"]))


def quantile_sketch(values: np.ndarray) -> QuantileSketch:
    """The sketch of ``values`` (NaN and infinities ignored); the same numbers for the same multiset of values."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return QuantileSketch(n=0, min=None, max=None, quantiles=())
    # Linear interpolation between order statistics (numpy's default method), from one sort: np.quantile's
    # per-call overhead is three times the sort's cost, paid per series of every closing window.
    x = np.sort(x)
    at = _GRID * (x.size - 1)
    lo = np.floor(at).astype(np.int64)
    hi = np.minimum(lo + 1, x.size - 1)
    q = x[lo] + (x[hi] - x[lo]) * (at - lo)
    return QuantileSketch(n=int(x.size), min=_short(x[0]), max=_short(x[-1]), quantiles=tuple(_short(v) for v in q))


def _short(v: float) -> float:
    """``v`` to 6 significant digits: a drawing needs no more, and the stored row stays small (docs/evidence.md)."""
    return float(f"{float(v):.6g}")


@dataclass(frozen=True, slots=True)
class TokenShift:
    """A token whose share of events rose or fell against the reference.

    ``window_events``: events of the window that contain the token (at least the privacy floor ``k`` for a
    rising token; a falling token may have fewer, it is a token of the profile, which passed the floor there);
    ``reference_events``: events of the reference that do; ``*_total``: events on each side. ``log_odds``:
    the log-odds ratio window vs reference with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008),
    ``z`` its z-score; positive means more frequent in the window. ``ratio``: window share / reference share
    (``None`` when the reference never saw it).
    """

    token: str
    window_events: int
    window_total: int
    reference_events: int
    reference_total: int
    log_odds: float
    z: float
    ratio: float | None

    def to_dict(self) -> dict:
        return as_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TokenShift":
        return cls(token=d["token"], window_events=int(d["window_events"]), window_total=int(d["window_total"]),
                   reference_events=int(d["reference_events"]), reference_total=int(d["reference_total"]),
                   log_odds=float(d["log_odds"]), z=float(d["z"]), ratio=d["ratio"])  # fmt: skip


# -- shifted tokens ----------------------------------------------------------------------------------------

# The prior's weight, in pseudo-events per token: the log-odds of each side are shrunk towards the pooled
# share of events that hold the token by this many events (Monroe, Colaresi & Quinn 2008, section 3.5).
PRIOR_EVENTS = 100.0


def token_shifts(window: Mapping[str, int], window_total: int, reference: Mapping[str, int], reference_total: int,
                 *, min_events: int, top: int, prior_events: float = PRIOR_EVENTS,
                 ) -> tuple[tuple[TokenShift, ...], tuple[TokenShift, ...]]:
    """The ``top`` tokens that rose and fell most in the window, by the z-score of their log-odds ratio.

    ``window`` / ``reference``: events holding each token (document frequencies) out of ``*_total`` events.
    Each token is a binary variable per event; its log-odds in each corpus get an informative Beta prior
    centred on the pooled share of events that hold it, weighted ``prior_events`` (Monroe et al.'s
    informative Dirichlet prior, per token): rare tokens are shrunk, so the z-score ranks real shifts rather
    than noise. Pooled, not the reference alone, so a token new in the window is not shrunk to nothing.

    Privacy floor: a token rises only when at least ``min_events`` window events hold it; a token falls only
    when it is in ``reference`` (whose tokens passed the same floor when the profile was built), whatever
    its window count. Ties are broken by the token, so the answer is a function of the counts alone.
    """
    if min_events < 1 or top < 0 or prior_events <= 0:
        raise ValueError("token_shifts: min_events must be >= 1, top >= 0 and prior_events > 0")
    if window_total <= 0 or reference_total <= 0 or top == 0:
        return (), ()
    names = sorted({t for t, c in window.items() if c >= min_events} | set(reference))
    if not names:
        return (), ()
    y = np.array([window.get(t, 0) for t in names], dtype=np.float64)
    r = np.array([reference.get(t, 0) for t in names], dtype=np.float64)
    y, r = np.minimum(y, window_total), np.minimum(r, reference_total)
    pooled = (y + r) / (window_total + reference_total)
    a, b = prior_events * pooled, prior_events * (1.0 - pooled)
    # a + y > 0 for every token here (each has events on one side); b + n - y > 0 unless every event of both
    # sides holds it, where a tiny floor keeps the logs finite (its delta is then 0).
    tiny = 1e-9
    wy, wn = y + a, np.maximum(window_total - y + b, tiny)
    ry, rn = r + a, np.maximum(reference_total - r + b, tiny)
    delta = np.log(wy / wn) - np.log(ry / rn)
    z = delta / np.sqrt(1.0 / wy + 1.0 / wn + 1.0 / ry + 1.0 / rn)
    rising = [i for i in np.lexsort((np.arange(len(names)), -z)) if z[i] > 0 and y[i] >= min_events]
    falling = [i for i in np.lexsort((np.arange(len(names)), z)) if z[i] < 0 and names[i] in reference]

    def shift(i: int) -> TokenShift:
        share = r[i] / reference_total
        return TokenShift(token=names[i], window_events=int(y[i]), window_total=int(window_total),
                          reference_events=int(r[i]), reference_total=int(reference_total),
                          log_odds=round(float(delta[i]), 4), z=round(float(z[i]), 4),
                          ratio=round(float(y[i] / window_total / share), 4) if share > 0 else None)  # fmt: skip

    return tuple(shift(i) for i in rising[:top]), tuple(shift(i) for i in falling[:top])


# -- open word sets: Space-Saving ----------------------------------------------------------------------------


class SpaceSaving:
    """Document counts of the most frequent keys of an open set (words), in bounded memory.

    Space-Saving (Metwally, Agrawal & El Abbadi 2005) in its mergeable form: keys are 64-bit hashes; each
    entry holds ``count`` (an over-estimate of the events that held the key) and ``error`` (how much of it
    may be someone else's), so ``count - error`` is a guaranteed lower bound. Batches add exact counts; a key
    new to the sketch starts at the current ``floor`` (every key ever evicted had at most that many). The
    sketch is cut back to ``capacity`` entries (largest counts kept, ties by key) only by :meth:`prune`, which
    the caller invokes at fixed points of the event sequence: the state is then the same however the events
    were batched, and across a restart from :meth:`state`.

    ``names`` holds the readable key of an entry only once its lower bound reaches ``min_events`` (the
    privacy floor): a rarer word is never held as text, not even in the checkpoint.
    """

    __slots__ = ("capacity", "min_events", "floor", "keys", "counts", "errors", "names")

    def __init__(self, capacity: int, *, min_events: int):
        if capacity < 1 or min_events < 1:
            raise ValueError("SpaceSaving: capacity and min_events must be >= 1")
        self.capacity, self.min_events = int(capacity), int(min_events)
        self.floor = 0
        self.keys = np.empty(0, dtype=np.uint64)  # sorted
        self.counts = np.empty(0, dtype=np.int64)
        self.errors = np.empty(0, dtype=np.int64)
        self.names: dict[int, str] = {}

    def update(self, keys: np.ndarray, name_of: Callable[[int], str], counts: np.ndarray | None = None) -> None:
        """Add one occurrence per element of ``keys`` (uint64; an event's keys once each), or ``counts[i]`` of
        the distinct ``keys[i]``; ``name_of(key)`` gives the text of a key of this batch whose lower bound
        reaches the floor."""
        if keys.size == 0:
            return
        if counts is None:
            keys = np.sort(keys.astype(np.uint64, copy=False))
            starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
            uniq, counts = keys[starts], np.diff(np.append(starts, keys.size))
        else:
            uniq, counts = keys.astype(np.uint64, copy=False), counts.astype(np.int64, copy=False)
        at = np.searchsorted(self.keys, uniq)
        found = at < self.keys.size
        found[found] = self.keys[at[found]] == uniq[found]
        self.counts[at[found]] += counts[found]
        new = ~found
        if new.any():
            keys_all = np.concatenate([self.keys, uniq[new]])
            order = np.argsort(keys_all, kind="stable")
            n_new = int(new.sum())
            self.keys = keys_all[order]
            self.counts = np.concatenate([self.counts, counts[new] + self.floor])[order]
            self.errors = np.concatenate([self.errors, np.full(n_new, self.floor, np.int64)])[order]
        touched = np.searchsorted(self.keys, uniq)
        lower = self.counts[touched] - self.errors[touched]
        for key in uniq[lower >= self.min_events].tolist():
            if key not in self.names:
                self.names[key] = name_of(key)

    def prune(self) -> None:
        """Keep the ``capacity`` largest entries (ties: the smaller key); the floor becomes the smallest kept."""
        if self.keys.size <= self.capacity:
            return
        order = np.lexsort((self.keys, -self.counts))[: self.capacity]
        self.floor = max(self.floor, int(self.counts[order].min()))
        order.sort()  # back to key order (keys were sorted)
        dropped = np.setdiff1d(self.keys, self.keys[order], assume_unique=True)
        self.keys, self.counts, self.errors = self.keys[order], self.counts[order], self.errors[order]
        for key in dropped.tolist():
            self.names.pop(key, None)

    def lower_bound(self, keys: np.ndarray) -> np.ndarray:
        """The guaranteed count of each of ``keys`` (0 for keys not held)."""
        keys = np.asarray(keys, dtype=np.uint64)
        out = np.zeros(keys.size, dtype=np.int64)
        if self.keys.size == 0 or keys.size == 0:
            return out
        at = np.minimum(np.searchsorted(self.keys, keys), self.keys.size - 1)
        hit = self.keys[at] == keys
        out[hit] = self.counts[at[hit]] - self.errors[at[hit]]
        return out

    def named(self) -> dict[str, int]:
        """Each named key's text and guaranteed count (all at least ``min_events``)."""
        keys = np.fromiter(self.names, dtype=np.uint64, count=len(self.names))
        return dict(zip(self.names.values(), self.lower_bound(keys).tolist()))

    def state(self) -> dict:
        return {"capacity": self.capacity, "min_events": self.min_events, "floor": self.floor,
                "keys": self.keys.tolist(), "counts": self.counts.tolist(), "errors": self.errors.tolist(),
                "names": [[k, v] for k, v in sorted(self.names.items())]}

    @classmethod
    def from_state(cls, s: dict) -> "SpaceSaving":
        out = cls(s["capacity"], min_events=s["min_events"])
        out.floor = int(s["floor"])
        out.keys = np.array(s["keys"], dtype=np.uint64)
        out.counts = np.array(s["counts"], dtype=np.int64)
        out.errors = np.array(s["errors"], dtype=np.int64)
        out.names = {int(k): str(v) for k, v in s["names"]}
        return out


# -- exemplars ------------------------------------------------------------------------------------------------


class TopExemplars:
    """The ``n`` highest-scored events, ties broken by position: a total order, so the kept set is the same
    however the events were batched, and across a restart from :meth:`state`.

    Entries are ``(score, position, request_id)``; NaN scores never enter.
    """

    __slots__ = ("n", "kept")

    def __init__(self, n: int):
        if n < 0:
            raise ValueError("TopExemplars: n must be >= 0")
        self.n = int(n)
        self.kept: list[tuple[float, str, str | None]] = []  # best first

    def offer(self, scores: np.ndarray, entry: Callable[[int], tuple[str, str | None]]) -> None:
        """Offer events with ``scores``; ``entry(i)`` gives event ``i``'s (position, request id), asked only of
        the few that may be kept."""
        if self.n == 0 or scores.size == 0:
            return
        s = np.where(np.isnan(scores), -np.inf, scores)
        if len(self.kept) >= self.n:
            s = np.where(s >= self.kept[-1][0], s, -np.inf)
        if s.size > self.n:
            kth = np.partition(s, s.size - self.n)[s.size - self.n]
            s = np.where(s >= kth, s, -np.inf)  # ties at the cut all stay candidates
        candidates = np.flatnonzero(s > -np.inf)
        if candidates.size == 0:
            return
        merged = self.kept + [(float(scores[i]), *entry(int(i))) for i in candidates.tolist()]
        merged.sort(key=lambda e: (-e[0], e[1]))
        self.kept = merged[: self.n]

    def state(self) -> dict:
        return {"n": self.n, "kept": [list(e) for e in self.kept]}

    @classmethod
    def from_state(cls, s: dict) -> "TopExemplars":
        out = cls(s["n"])
        out.kept = [(float(a), str(b), c) for a, b, c in s["kept"]]
        return out


# -- exemplar scores ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Standardiser:
    """How far an event is from the reference: per column ``|x - center| / scale``, from reference columns.

    ``scale`` is the reference standard deviation, 1 where that is 0 or undefined (a constant column).
    """

    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, columns: list[np.ndarray]) -> "Standardiser":
        center, scale = [], []
        for c in columns:
            c = np.asarray(c, dtype=np.float64)
            c = c[np.isfinite(c)]
            center.append(float(c.mean()) if c.size else np.nan)
            sd = float(c.std()) if c.size > 1 else 0.0
            scale.append(sd if sd > 0 else 1.0)
        return cls(np.array(center, dtype=np.float64), np.array(scale, dtype=np.float64))

    def max_abs_z(self, rows: np.ndarray) -> np.ndarray:
        """The largest standardised deviation of each row over its finite columns (NaN: none finite)."""
        z = np.abs(rows - self.center) / self.scale
        z = np.where(np.isnan(z), -np.inf, z)
        out = z.max(axis=1) if z.shape[1] else np.full(z.shape[0], -np.inf)
        return np.where(out == -np.inf, np.nan, out)

    def distance(self, rows: np.ndarray) -> np.ndarray:
        """The Euclidean norm of each row's standardised deviations (NaN when any column is missing).

        Summed column by column in a fixed order, so a row's distance has the same bits in any batch.
        """
        total = np.zeros(rows.shape[0], dtype=np.float64)
        for j in range(rows.shape[1]):
            z = (rows[:, j] - self.center[j]) / self.scale[j]
            total += z * z
        return np.sqrt(total)
