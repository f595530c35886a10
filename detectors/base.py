"""Result objects shared by the detectors, and the validation of their thresholds.

Every detector returns one of the frozen dataclasses below. Their ``to_dict`` is the detector's part of the
window-result JSON (``docs/results.md``): plain Python scalars only, and ``None`` wherever a number is
undefined, so ``json.dumps(result.to_dict(), allow_nan=False)`` always succeeds. Every result class of the
project (here, in ``detectors.ab`` and in ``monitor.results``) gets its ``to_dict`` from :func:`as_dict`,
which walks the dataclass fields in declaration order: the field order *is* the documented key order.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FeatureDrift",
    "InputDriftResult",
    "ConfidenceShiftResult",
    "PredictionShiftResult",
    "LatencySummary",
    "check_in_range",
    "finite_or_none",
    "as_dict",
    "json_field",
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


# -- results to JSON -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _JsonSpec:
    name: str | None = None
    encode: Callable[[object], object] | None = None
    omit_none: bool = False
    skip: bool = False
    key_by: str | None = None
    flatten: bool = False


def json_field(
    *,
    name: str | None = None,
    encode: Callable[[object], object] | None = None,
    omit_none: bool = False,
    skip: bool = False,
    key_by: str | None = None,
    flatten: bool = False,
    **field_kwargs,
):
    """Return a dataclass ``field`` that tells :func:`as_dict` how to write it.

    ``name``: its JSON key (default: the field name); ``encode``: a function of the value that returns the
    JSON value (e.g. epoch ms to an RFC 3339 string); ``omit_none``: leave the key out when the value is
    ``None``; ``skip``: never written (e.g. the name a parent keys this object by); ``key_by``: a sequence of
    result objects becomes a mapping keyed by that attribute of each; ``flatten``: a nested result's keys
    are written into this object's. Other keyword arguments go to :func:`dataclasses.field`.
    """
    spec = _JsonSpec(name, encode, omit_none, skip, key_by, flatten)
    return dataclasses.field(metadata={"json": spec}, **field_kwargs)


_COERCE = {"float": float, "int": int, "bool": bool}
_PLANS: dict[type, tuple] = {}


def _plan(cls: type) -> tuple:
    """(attribute, spec, coercion) per field of ``cls``, computed once per class."""
    plan = _PLANS.get(cls)
    if plan is None:
        entries = []
        for f in dataclasses.fields(cls):
            # Annotations are strings here (postponed evaluation): "float", "int | None", ...
            annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
            base = annotation.removesuffix(" | None").strip()
            entries.append((f.name, f.metadata.get("json") or _JsonSpec(), _COERCE.get(base)))
        plan = _PLANS[cls] = tuple(entries)
    return plan


def as_dict(obj: object) -> dict:
    """Return the JSON document of a result dataclass: fields in declaration order, JSON-safe values.

    NaN and infinities become ``None``; numpy scalars become Python ones; a field annotated ``float``,
    ``int`` or ``bool`` is written as that type; nested dataclasses, mappings and sequences are converted
    too; :func:`json_field` metadata renames, encodes, omits or flattens a field.

    Examples
    --------
    >>> @dataclass(frozen=True)
    ... class R:
    ...     name: str = json_field(skip=True)
    ...     p_value: float = 0.0
    ...     end_ms: int | None = json_field(name="end", encode=lambda ms: ms // 1000, default=None)
    >>> as_dict(R("x", float("nan"), 5000))
    {'p_value': None, 'end': 5}
    """
    out: dict = {}
    for attr, spec, coerce in _plan(type(obj)):
        value = getattr(obj, attr)
        if spec.skip or (value is None and spec.omit_none):
            continue
        if spec.flatten:  # a missing nested result adds no keys
            if value is not None:
                out.update(_jsonable(value))
            continue
        key = spec.name or attr
        if value is None:
            out[key] = None
        elif spec.encode is not None:
            out[key] = _jsonable(spec.encode(value))
        elif spec.key_by is not None:
            out[key] = {getattr(v, spec.key_by): _jsonable(v) for v in value}
        else:
            out[key] = _jsonable(coerce(value) if coerce is not None else value)
    return out


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return finite_or_none(value)
    to_dict = getattr(value, "to_dict", None)
    if to_dict is not None:  # a nested result (its own to_dict may add what is not a field)
        return to_dict()
    if dataclasses.is_dataclass(value):
        return as_dict(value)
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """The two-sample test of one input feature (KS, or proportions of a 0/1 one); see ``KSDrift``."""

    feature: str = json_field(skip=True)  # the key of drift.input.features, not a field of the entry
    statistic: float
    p_value: float
    p_value_adjusted: float
    threshold: float
    min_effect: float
    drifted: bool
    window_n: int
    reference_n: int
    # None (not written): KS. "proportion" for a 0/1 feature: two-proportion z-test, statistic |difference of
    # the shares of ones|, min_effect the absolute floor min_proportion_delta (detectors.proportions).
    test: str | None = json_field(omit_none=True, default=None)

    def to_dict(self) -> dict:
        """Return the feature's entry of ``drift.input.features`` (the name is the key, not a field)."""
        return as_dict(self)


@dataclass(frozen=True, slots=True)
class InputDriftResult:
    """Per-feature KS tests of one window, with p-values adjusted across the tested features."""

    drifted: bool
    correction: str
    alpha: float
    min_effect: float
    features: tuple[FeatureDrift, ...] = json_field(key_by="feature")

    def to_dict(self) -> dict:
        """Return ``drift.input`` of the window result."""
        return as_dict(self)


@dataclass(frozen=True, slots=True)
class ConfidenceShiftResult:
    """KS test of a window's confidences against the reference's, with mean and low-confidence shifts.

    ``mean`` and ``low_ratio`` are NaN (``None`` in ``to_dict``) for a window without a finite confidence.
    The fields are in the order of ``drift.confidence``: the documented keys first, then the additions.
    """

    drifted: bool
    statistic: float
    p_value: float
    threshold: float
    min_effect: float
    mean_delta: float
    reference_mean: float
    low_ratio_delta: float
    mean: float
    low_ratio: float
    reference_low_ratio: float
    low_threshold: float
    n: int
    reference_n: int

    def to_dict(self) -> dict:
        """Return ``drift.confidence``."""
        return as_dict(self)


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
        return as_dict(self)


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
        return as_dict(self)
