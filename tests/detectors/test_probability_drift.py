"""ProbabilityDrift (BBSD): per-class KS tests, corrected across classes; contract and agreement with scipy."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from scipy import stats

from detectors.correction import adjust_p_values
from detectors.probabilities import ProbabilityDrift

CLASSES = ("positive", "negative", "neutral")


def _probs(rng, n, concentration=(6.0, 3.0, 1.0)):
    return rng.dirichlet(concentration, n)


@pytest.fixture(scope="module")
def reference():
    return _probs(np.random.default_rng(0), 3000)


def test_quiet_on_the_reference_distribution_and_drifted_on_a_shift(reference):
    detector = ProbabilityDrift.from_matrix(reference, CLASSES)
    quiet = [not detector.test_matrix(_probs(np.random.default_rng(10 + s), 400)).drifted for s in range(10)]
    assert sum(quiet) >= 9
    shifted = detector.test_matrix(_probs(np.random.default_rng(1), 400, (3.0, 3.0, 4.0)))
    assert shifted.drifted and {c.feature for c in shifted.classes if c.drifted} >= {"neutral"}


def test_ks_part_agrees_with_scipy_and_is_corrected_across_classes(reference):
    detector = ProbabilityDrift.from_matrix(reference, CLASSES, correction="bonferroni")
    window = _probs(np.random.default_rng(2), 500, (5.0, 3.0, 1.5))
    result = detector.test_matrix(window)
    raw = []
    for j, c in enumerate(result.classes):
        expected = stats.ks_2samp(reference[:, j], window[:, j], method="asymp")
        assert c.feature == CLASSES[j]
        assert c.statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert c.p_value == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-12)
        raw.append(c.p_value)
    np.testing.assert_allclose([c.p_value_adjusted for c in result.classes],
                               adjust_p_values(np.array(raw), "bonferroni"))


def test_same_input_same_result_and_pickles(reference):
    window = _probs(np.random.default_rng(3), 300, (3.0, 3.0, 4.0))
    a = ProbabilityDrift.from_matrix(reference, CLASSES).test_matrix(window)
    detector = pickle.loads(pickle.dumps(ProbabilityDrift.from_matrix(reference, CLASSES)))
    assert detector.test_matrix(window) == a
    assert pickle.loads(pickle.dumps(a)) == a


def test_false_alarm_share_is_at_most_alpha(reference):
    alpha, windows = 0.05, 150
    detector = ProbabilityDrift.from_matrix(reference, CLASSES, alpha=alpha, min_effect=0.0)
    rng = np.random.default_rng(4)
    flagged = np.mean([detector.test_matrix(_probs(rng, 300)).drifted for _ in range(windows)])
    assert flagged <= stats.binom.ppf(0.999, windows, alpha) / windows


def test_to_dict_is_the_planned_json(reference):
    result = ProbabilityDrift.from_matrix(reference, CLASSES).test_matrix(_probs(np.random.default_rng(5), 300))
    doc = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert list(doc) == ["drifted", "correction", "alpha", "min_effect", "classes"]
    assert list(doc["classes"]) == list(CLASSES)
    assert {"statistic", "p_value", "p_value_adjusted", "drifted"} <= set(doc["classes"]["neutral"])


def test_bad_input_is_refused(reference):
    with pytest.raises(ValueError, match=r"^probabilities must have shape \(n, 3\)"):
        ProbabilityDrift.from_matrix(reference[:, :2], CLASSES)
    with pytest.raises(ValueError, match=r"^alpha must be "):
        ProbabilityDrift.from_matrix(reference, CLASSES, alpha=2.0)
