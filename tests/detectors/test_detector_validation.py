"""Every threshold is validated at construction, and the error names the parameter and the value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.base import check_in_range
from detectors.classes import PredictionShift
from detectors.confidence import ConfidenceShift
from detectors.ks import KSDrift


def _ks(**kwargs):
    return KSDrift({"x": np.arange(10.0)}, **kwargs)


def _confidence(**kwargs):
    return ConfidenceShift(np.linspace(0.0, 1.0, 10), **kwargs)


def _prediction(**kwargs):
    return PredictionShift({"a": 3, "b": 4}, **kwargs)


BAD = [
    # (detector, parameter, bad value)
    (_ks, "alpha", 0.0),  # alpha is in the open interval (0, 1)
    (_ks, "alpha", 1.0),
    (_ks, "alpha", float("nan")),
    (_ks, "alpha", "0.01"),
    (_ks, "alpha", True),  # a bool is an int, but never a meant alpha
    (_ks, "min_effect", -0.1),  # min_effect is a KS statistic, in [0, 1]
    (_ks, "min_effect", 1.5),
    (_ks, "correction", "holm"),
    (_ks, "correction", "BH"),
    (_confidence, "alpha", -1.0),
    (_confidence, "min_effect", 2.0),
    (_confidence, "low_threshold", 1.2),
    (_confidence, "low_threshold", None),
    (_prediction, "alpha", 1.5),
    (_prediction, "min_psi", -0.01),
    (_prediction, "min_psi", math.inf),
    (_prediction, "pseudo_count", 0.0),  # an unseen class needs a nonzero expectation
    (_prediction, "pseudo_count", -1),
]


@pytest.mark.parametrize("make, parameter, value", BAD, ids=lambda v: getattr(v, "__name__", repr(v)))
def test_bad_parameter_is_named_in_the_error(make, parameter, value):
    with pytest.raises(ValueError) as raised:
        make(**{parameter: value})
    message = str(raised.value)
    assert message.startswith(f"{parameter} must be ")
    assert repr(value) in message


@pytest.mark.parametrize(
    "make, kwargs",
    [
        (_ks, {"alpha": 1e-9, "min_effect": 0.0, "correction": "bonferroni"}),
        (_ks, {"alpha": 0.999, "min_effect": 1.0}),
        (_confidence, {"low_threshold": 0.0}),
        (_confidence, {"low_threshold": 1.0}),
        (_prediction, {"min_psi": 0, "pseudo_count": 1e-6}),
    ],
)
def test_boundary_values_are_accepted(make, kwargs):
    detector = make(**kwargs)
    for name, value in kwargs.items():
        assert getattr(detector, name) == value


def test_range_messages_read_as_sentences():
    with pytest.raises(ValueError, match=r"^alpha must be a number in \(0, 1\), got 2\.$"):
        check_in_range("alpha", 2, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    with pytest.raises(ValueError, match=r"^pseudo_count must be a finite number greater than 0, got 0\.$"):
        check_in_range("pseudo_count", 0, 0.0, math.inf, low_inclusive=False)
    with pytest.raises(ValueError, match=r"^min_psi must be a finite number at least 0, got -1\.$"):
        check_in_range("min_psi", -1, 0.0, math.inf)
