"""What a window keeps so that a person can see what changed: the pure statistics of the evidence.

A window's evidence (``monitor.results.WindowEvidence``) is made of these frozen objects: a compact quantile
sketch per numeric series (a feature, the confidence, a class probability), and the tokens whose frequency
rose or fell most against the reference. Nothing here holds text beyond a token that passed the privacy floor
(seen in at least ``k`` distinct events), and nothing does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.base import as_dict

__all__ = ["QUANTILE_GRID", "QuantileSketch", "TokenShift", "quantile_sketch"]

# The fixed grid every sketch is taken at (reference and window alike, so any two overlay): 1 %, 2.5 %, 5 %,
# every 5 % to 95 %, 97.5 %, 99 %; min and max are kept beside it. 23 numbers: a few hundred bytes in JSON.
QUANTILE_GRID: tuple[float, ...] = (0.01, 0.025, *(round(0.05 * i, 2) for i in range(1, 20)), 0.975, 0.99)


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
    q = np.quantile(x, QUANTILE_GRID)  # linear interpolation: deterministic, order-free
    return QuantileSketch(n=int(x.size), min=float(x.min()), max=float(x.max()), quantiles=tuple(float(v) for v in q))


@dataclass(frozen=True, slots=True)
class TokenShift:
    """A token whose share of events rose or fell against the reference.

    ``window_events``: events of the window that contain the token (at least the privacy floor ``k``);
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
