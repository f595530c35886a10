"""The contract every window-vs-reference detector keeps, run over all of them."""

from __future__ import annotations

import dataclasses
import json
import pickle
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

from detectors.classes import PredictionShift
from detectors.confidence import ConfidenceShift
from detectors.ks import KSDrift

CLASSES = ("positive", "negative", "neutral")


def _features(rng: np.random.Generator, n: int, shift: float) -> dict[str, np.ndarray]:
    # A continuous, a skewed and a tie-heavy integer feature, like char_length / digit_ratio / word_count.
    return {
        "normal": rng.normal(shift, 1.0, n),
        "skewed": rng.exponential(1.0, n) + shift,
        "integer": rng.poisson(8.0 + 4.0 * shift, n).astype(np.float64),
    }


def _binary(rng: np.random.Generator, n: int, truncated: float) -> dict[str, np.ndarray]:
    # 0/1 features tested as proportions (empty, truncated) beside a continuous one, as in a real window.
    return {
        "normal": rng.normal(0.0, 1.0, n),
        "empty": (rng.random(n) < 0.01).astype(np.float64),
        "truncated": (rng.random(n) < truncated).astype(np.float64),
    }


def _class_counts(rng: np.random.Generator, n: int, p: tuple[float, ...]) -> dict[str, int]:
    return {c: int(k) for c, k in zip(CLASSES, rng.multinomial(n, p))}


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[np.random.Generator], Any]  # builds the detector from a seeded reference
    null: Callable[[np.random.Generator], Any]  # a window drawn from the reference distribution
    shifted: Callable[[np.random.Generator], Any]  # a window that has clearly drifted


CASES = [
    Case(
        "ks",
        make=lambda rng: KSDrift(_features(rng, 2000, 0.0)),
        null=lambda rng: _features(rng, 500, 0.0),
        shifted=lambda rng: _features(rng, 500, 1.0),
    ),
    Case(
        # truncation from 0% to 8%: under KS's 0.1 floor, over the proportion test's absolute 0.02
        "proportion",
        make=lambda rng: KSDrift(_binary(rng, 2000, 0.0), binary=("empty", "truncated")),
        null=lambda rng: _binary(rng, 500, 0.0),
        shifted=lambda rng: _binary(rng, 500, 0.08),
    ),
    Case(
        "confidence",
        make=lambda rng: ConfidenceShift(rng.beta(8.0, 2.0, 2000)),
        null=lambda rng: rng.beta(8.0, 2.0, 500),
        shifted=lambda rng: rng.beta(3.0, 2.0, 500),
    ),
    Case(
        "prediction",
        make=lambda rng: PredictionShift(_class_counts(rng, 5000, (0.6, 0.3, 0.1))),
        null=lambda rng: _class_counts(rng, 500, (0.6, 0.3, 0.1)),
        shifted=lambda rng: _class_counts(rng, 500, (0.3, 0.3, 0.4)),
    ),
]


@pytest.fixture(params=CASES, ids=lambda c: c.name)
def case(request) -> Case:
    return request.param


def test_same_seed_same_result(case):
    first = case.make(np.random.default_rng(7)).test(case.shifted(np.random.default_rng(8)))
    second = case.make(np.random.default_rng(7)).test(case.shifted(np.random.default_rng(8)))
    assert first == second


def test_testing_leaves_the_detector_unchanged(case):
    detector = case.make(np.random.default_rng(1))
    shifted, null = case.shifted(np.random.default_rng(2)), case.null(np.random.default_rng(3))
    before = detector.test(null)
    detector.test(shifted)
    assert detector.test(null) == before


def test_pickle_round_trip_of_detector_and_result(case):
    detector = case.make(np.random.default_rng(3))
    window = case.shifted(np.random.default_rng(4))
    result = detector.test(window)

    restored = pickle.loads(pickle.dumps(detector))
    assert restored.test(window) == result
    assert pickle.loads(pickle.dumps(result)) == result


def test_quiet_on_samples_from_the_reference_distribution(case):
    quiet = 0
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        quiet += not case.make(rng).test(case.null(rng)).drifted
    assert quiet >= 9


def test_alarms_on_a_shifted_sample(case):
    for seed in range(3):
        rng = np.random.default_rng(200 + seed)
        assert case.make(rng).test(case.shifted(rng)).drifted


def test_result_is_frozen(case):
    result = case.make(np.random.default_rng(5)).test(case.null(np.random.default_rng(6)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.drifted = not result.drifted


def test_to_dict_is_strict_json_and_round_trips(case):
    result = case.make(np.random.default_rng(9)).test(case.shifted(np.random.default_rng(10)))
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(text) == result.to_dict()
    assert json.loads(text)["drifted"] is True


# Keys docs/results.md shows for each block; to_dict may add fields, never drop these.
DOCUMENTED_KEYS = {
    "ks": {"drifted", "correction", "alpha", "min_effect", "features"},
    "proportion": {"drifted", "correction", "alpha", "min_effect", "features"},
    "confidence": {"drifted", "statistic", "p_value", "threshold", "min_effect", "mean_delta", "reference_mean",
                   "low_ratio_delta"},
    "prediction": {"drifted", "statistic", "p_value", "threshold", "dof", "psi", "js_distance", "min_psi",
                   "unseen_classes"},
}


def test_to_dict_has_the_documented_keys(case):
    result = case.make(np.random.default_rng(11)).test(case.null(np.random.default_rng(12)))
    assert DOCUMENTED_KEYS[case.name] <= result.to_dict().keys()
