"""The label-free accuracy estimate (detectors.accuracy_estimate): the held-out table as a capped prior, realised
labels updating it, and the prior discounted where the labels contradict it beyond chance."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.accuracy_estimate import DISAGREEMENT_CHI2, LabelEvidence, blended_accuracy
from detectors.classification import fit_confidence_calibration

BINS = 10


def _table(accuracy: float, n: int = 1000):
    """A held-out table with all its pairs at confidence 0.95 (the top bin), right ``accuracy`` of the time."""
    ok = round(n * accuracy)
    return fit_confidence_calibration([0.95] * n, [True] * ok + [False] * (n - ok), bins=BINS)


def _labels(n: float, ok: float) -> LabelEvidence:
    return LabelEvidence((0.0,) * (BINS - 1) + (n,), (0.0,) * (BINS - 1) + (ok,))


def _undiscounted(p0: float, n: float, ok: float, prior_weight: float = 100.0) -> float:
    return (prior_weight * p0 + ok) / (prior_weight + n)


def test_labels_that_agree_with_the_table_leave_its_weight_whole():
    # 200 labels at 78 % against a table at 80 %: Q is far below the threshold, the plain Beta update.
    e = blended_accuracy([0.95] * 300, _table(0.8), _labels(200, 156))
    assert e.estimate == pytest.approx(_undiscounted(0.8, 200, 156), abs=1e-12)


def test_labels_that_contradict_the_table_replace_it_and_widen_the_interval():
    # A stale table (90 %) against 240 labels at 70 %: the undiscounted mean would sit 6 points above the labels.
    table, evidence = _table(0.9), _labels(240, 168)
    e = blended_accuracy([0.95] * 300, table, evidence)
    assert abs(e.estimate - 0.7) < abs(_undiscounted(0.9, 240, 168) - 0.7) / 3
    # The same labels with a table that agrees (70 %): the interval is narrower (the prior's pairs count in full).
    agreeing = blended_accuracy([0.95] * 300, _table(0.7), evidence)
    assert e.high - e.low > agreeing.high - agreeing.low
    assert e.low < 0.7 < e.high


@pytest.mark.parametrize("n, ok, most", [
    (1, 0, 0.02),    # one wrong label against a 90 % table: within chance, the bin moves by the plain update only
    (2, 0, 0.08),    # two: at the edge of chance (p about 0.01), a bounded move
    (5, 5, 0.02),    # labels right more often than the table says, as chance allows
])
def test_a_few_labels_cannot_swing_a_bin(n, ok, most):
    e = blended_accuracy([0.95] * 300, _table(0.9), _labels(n, ok))
    assert abs(e.estimate - 0.9) < most


def test_the_discount_is_the_threshold_over_the_heterogeneity_statistic():
    # Prior: 100 pairs at 90 %; labels: 400 at 60 %. Q = d^2 / v with the pooled p (1 - p) (1/100 + 1/400).
    n0, p0, n, ok = 100.0, 0.9, 400.0, 240.0
    pooled = (n0 * p0 + ok) / (n0 + n)
    q = (p0 - ok / n) ** 2 / (pooled * (1 - pooled) * (1 / n0 + 1 / n))
    assert q > DISAGREEMENT_CHI2
    kept = n0 * DISAGREEMENT_CHI2 / q
    e = blended_accuracy([0.95] * 300, _table(p0), _labels(n, ok))
    assert e.estimate == pytest.approx((kept * p0 + ok) / (kept + n), abs=1e-12)


def test_the_estimate_is_deterministic_and_per_bin():
    # The discount is elementwise: a second bin's labels do not change the first bin's posterior.
    rng = np.random.default_rng(4)
    conf = np.clip(0.5 + rng.beta(2.0, 1.2, 500) * 0.5, 0.5, 1.0)
    table = fit_confidence_calibration(conf, rng.random(500) < conf, bins=BINS)
    a = LabelEvidence((0.0,) * 8 + (50.0, 300.0), (0.0,) * 8 + (20.0, 150.0))
    b = LabelEvidence((0.0,) * 8 + (50.0, 300.0), (0.0,) * 8 + (20.0, 150.0))
    assert blended_accuracy(conf, table, a) == blended_accuracy(conf, table, b)
    only_top = blended_accuracy([0.95] * 10, table, a)
    other_bin_changed = blended_accuracy([0.95] * 10, table, LabelEvidence((0.0,) * 8 + (50.0, 300.0),
                                                                           (0.0,) * 8 + (45.0, 150.0)))
    assert only_top == other_bin_changed
