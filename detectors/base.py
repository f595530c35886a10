"""Result objects shared by the detectors, and the validation of their thresholds.

Every detector returns one of the frozen dataclasses below. Their ``to_dict`` is the detector's part of the
window-result JSON (``docs/results.md``): plain Python scalars only, and ``None`` wherever a number is
undefined, so ``json.dumps(result.to_dict(), allow_nan=False)`` always succeeds.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

__all__ = [
    "FeatureDrift",
    "InputDriftResult",
    "ConfidenceShiftResult",
    "PredictionShiftResult",
    "LatencySummary",
    "check_in_range",
    "finite_or_none",
]


def check_in_range(
    name: str,
    value: object,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming ``name`` if it is outside the range.

    The value must be finite, also when ``high`` is infinite. ``bool`` is refused even though it is an
    ``int``: ``alpha=True`` is always a mistake.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        x = float(value)
        ok = (x >= low if low_inclusive else x > low) and (x <= high if high_inclusive else x < high)
    if not ok:
        raise ValueError(f"{name} must be {_describe_range(low, high, low_inclusive, high_inclusive)}, "
                         f"got {value!r}.")
    return x


def _describe_range(low: float, high: float, low_inclusive: bool, high_inclusive: bool) -> str:
    if math.isinf(high):
        return f"a finite number {'at least' if low_inclusive else 'greater than'} {low:g}"
    left = "[" if low_inclusive else "("
    right = "]" if high_inclusive else ")"
    return f"a number in {left}{low:g}, {high:g}{right}"


def finite_or_none(x: float) -> float | None:
    """Return ``x`` as a JSON-safe float: NaN and infinities become ``None``."""
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """The two-sample KS test of one input feature; see :class:`detectors.ks.KSDrift`."""

    feature: str
    statistic: float
    p_value: float
    p_value_adjusted: float
    threshold: float
    min_effect: float
    drifted: bool
    window_n: int
    reference_n: int

    def to_dict(self) -> dict:
        """Return the feature's entry of ``drift.input.features`` (the name is the key, not a field)."""
        return {
            "statistic": finite_or_none(self.statistic),
            "p_value": finite_or_none(self.p_value),
            "p_value_adjusted": finite_or_none(self.p_value_adjusted),
            "threshold": finite_or_none(self.threshold),
            "min_effect": finite_or_none(self.min_effect),
            "drifted": bool(self.drifted),
            "window_n": int(self.window_n),
            "reference_n": int(self.reference_n),
        }


@dataclass(frozen=True, slots=True)
class InputDriftResult:
    """Per-feature KS tests of one window, with p-values adjusted across the tested features."""

    drifted: bool
    correction: str
    alpha: float
    min_effect: float
    features: tuple[FeatureDrift, ...]

    def to_dict(self) -> dict:
        """Return ``drift.input`` of the window result."""
        return {
            "drifted": bool(self.drifted),
            "correction": self.correction,
            "alpha": finite_or_none(self.alpha),
            "min_effect": finite_or_none(self.min_effect),
            "features": {f.feature: f.to_dict() for f in self.features},
        }


@dataclass(frozen=True, slots=True)
class ConfidenceShiftResult:
    """KS test of a window's confidences against the reference's, with mean and low-confidence shifts.

    ``mean`` and ``low_ratio`` are NaN (``None`` in ``to_dict``) for a window without a finite confidence.
    """

    drifted: bool
    statistic: float
    p_value: float
    threshold: float
    min_effect: float
    mean: float
    reference_mean: float
    mean_delta: float
    low_ratio: float
    reference_low_ratio: float
    low_ratio_delta: float
    low_threshold: float
    n: int
    reference_n: int

    def to_dict(self) -> dict:
        """Return ``drift.confidence``: the documented keys first, then the other fields (additions)."""
        return {
            "drifted": bool(self.drifted),
            "statistic": finite_or_none(self.statistic),
            "p_value": finite_or_none(self.p_value),
            "threshold": finite_or_none(self.threshold),
            "min_effect": finite_or_none(self.min_effect),
            "mean_delta": finite_or_none(self.mean_delta),
            "reference_mean": finite_or_none(self.reference_mean),
            "low_ratio_delta": finite_or_none(self.low_ratio_delta),
            "mean": finite_or_none(self.mean),
            "low_ratio": finite_or_none(self.low_ratio),
            "reference_low_ratio": finite_or_none(self.reference_low_ratio),
            "low_threshold": finite_or_none(self.low_threshold),
            "n": int(self.n),
            "reference_n": int(self.reference_n),
        }


@dataclass(frozen=True, slots=True)
class PredictionShiftResult:
    """Chi-square goodness-of-fit test of a window's predicted-class counts against the reference's."""

    drifted: bool
    statistic: float
    p_value: float
    threshold: float
    dof: int
    psi: float
    js_distance: float
    min_psi: float
    unseen_classes: tuple[str, ...]
    n: int

    def to_dict(self) -> dict:
        """Return ``drift.prediction``: the documented keys first, then ``n`` (an addition)."""
        return {
            "drifted": bool(self.drifted),
            "statistic": finite_or_none(self.statistic),
            "p_value": finite_or_none(self.p_value),
            "threshold": finite_or_none(self.threshold),
            "dof": int(self.dof),
            "psi": finite_or_none(self.psi),
            "js_distance": finite_or_none(self.js_distance),
            "min_psi": finite_or_none(self.min_psi),
            "unseen_classes": list(self.unseen_classes),
            "n": int(self.n),
        }


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Exact latency percentiles of a window in milliseconds; all NaN when ``count`` is 0."""

    p50: float
    p95: float
    p99: float
    max: float
    count: int

    def to_dict(self) -> dict:
        """Return ``latency_ms`` of the window result (numbers are ``None`` when ``count`` is 0)."""
        return {
            "p50": finite_or_none(self.p50),
            "p95": finite_or_none(self.p95),
            "p99": finite_or_none(self.p99),
            "max": finite_or_none(self.max),
            "count": int(self.count),
        }
