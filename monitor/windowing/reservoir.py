"""A seeded, bounded, uniform sample of rows (Vitter's Algorithm R, vectorised per batch)."""

from __future__ import annotations

import numpy as np

__all__ = ["Reservoir"]


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A fast, well-mixed 64-bit hash (SplitMix64's finaliser); uint64 arithmetic wraps by design."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class Reservoir:
    """Keep a uniform sample of at most ``capacity`` rows of ``width`` float64 columns.

    Algorithm R, with the draw for the row at global index ``j`` taken from a hash of ``(seed, j)`` instead
    of a stateful generator. The kept sample is therefore a function of the row sequence alone, not of how
    it was split into batches: a daemon restarted from a checkpoint, whose Kafka polls cut the stream
    differently, keeps exactly the rows an uninterrupted run keeps. Storage grows geometrically up to
    ``capacity`` so a quiet window stays small.
    """

    __slots__ = ("capacity", "width", "seen", "seed", "_rows")

    def __init__(self, capacity: int, width: int, seed: int):
        self.capacity = int(capacity)
        self.width = int(width)
        self.seen = 0
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self._rows = np.empty((min(self.capacity, 256), self.width), dtype=np.float64)

    @property
    def sampled(self) -> bool:
        """True once more rows were offered than the reservoir holds."""
        return self.seen > self.capacity

    @property
    def rows(self) -> np.ndarray:
        """The kept rows (a view; at most ``capacity``)."""
        return self._rows[: min(self.seen, self.capacity)]

    def add(self, rows: np.ndarray) -> None:
        k = rows.shape[0]
        if k == 0:
            return
        filled = min(self.seen, self.capacity)
        take = min(k, self.capacity - filled)
        if take > 0:
            self._reserve(filled + take)
            self._rows[filled : filled + take] = rows[:take]
        if take < k:
            rest = rows[take:]
            # Global 0-based index of each remaining row; row j replaces slot r ~ U{0..j} when r < capacity.
            j = np.arange(self.seen + take, self.seen + k, dtype=np.int64)
            # Modulo bias is below 2**-32 for any index this process can reach.
            r = (_splitmix64(j.astype(np.uint64) ^ np.uint64(self.seed)) % (j + 1).astype(np.uint64)).astype(np.int64)
            keep = r < self.capacity
            # With repeated slots the later row wins, as it would one row at a time.
            self._rows[r[keep]] = rest[keep]
        self.seen += k

    def add_slots(self, k: int) -> np.ndarray:
        """Offer ``k`` rows whose values come later: return the slot each one takes (-1: not kept).

        The same draws as :meth:`add` (so the same rows are kept); the taken slots hold NaN until
        :meth:`set_row` writes their values. With a slot repeated, the later row wins, as in :meth:`add`.
        """
        slots = np.full(k, -1, dtype=np.int64)
        if k == 0:
            return slots
        filled = min(self.seen, self.capacity)
        take = min(k, self.capacity - filled)
        if take > 0:
            self._reserve(filled + take)
            slots[:take] = np.arange(filled, filled + take)
        if take < k:
            j = np.arange(self.seen + take, self.seen + k, dtype=np.int64)
            r = (_splitmix64(j.astype(np.uint64) ^ np.uint64(self.seed)) % (j + 1).astype(np.uint64)).astype(np.int64)
            keep = r < self.capacity
            slots[take:][keep] = r[keep]
        self._rows[slots[slots >= 0]] = np.nan
        self.seen += k
        return slots

    def set_row(self, slot: int, values: np.ndarray) -> None:
        """Write the values of the row that took ``slot`` (:meth:`add_slots`)."""
        self._rows[slot] = values

    def _reserve(self, n: int) -> None:
        if n <= self._rows.shape[0]:
            return
        size = self._rows.shape[0]
        while size < n:
            size *= 2
        grown = np.empty((min(size, self.capacity), self.width), dtype=np.float64)
        grown[: self._rows.shape[0]] = self._rows
        self._rows = grown

    def state(self) -> dict:
        """Return a JSON-able snapshot (for checkpoints); :meth:`from_state` restores it exactly."""
        return {
            "capacity": self.capacity,
            "width": self.width,
            "seen": self.seen,
            "rows": self.rows.tobytes(),
            "seed": self.seed,
        }

    @classmethod
    def from_state(cls, state: dict) -> "Reservoir":
        res = cls(state["capacity"], state["width"], state["seed"])
        res.seen = int(state["seen"])
        rows = np.frombuffer(state["rows"], dtype=np.float64).reshape(-1, res.width)
        res._rows = np.empty((max(rows.shape[0], 1), res.width), dtype=np.float64)
        res._rows[: rows.shape[0]] = rows
        return res
