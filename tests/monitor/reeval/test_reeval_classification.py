"""detectors.classification against hand-worked examples and loop-by-loop recomputations."""

from __future__ import annotations

import doctest
import math
import pickle

import numpy as np
import pytest

import detectors.classification as cls
from detectors.classification import (
    CalibrationTable,
    agreement,
    classification_report,
    compare_probabilities,
    confusion_matrix,
    estimate_accuracy,
    expected_calibration_error,
    fit_confidence_calibration,
    max_abs_probability_change,
)


def _loop_metrics(y_true, y_pred, k):
    """Per-class precision/recall/F1 and macro-F1, counted one sample at a time (no shared code path)."""
    cm = [[0] * k for _ in range(k)]
    for t, p in zip(y_true, y_pred):
        cm[t][p] += 1
    precision, recall, f1 = [], [], []
    seen = []
    for c in range(k):
        tp = cm[c][c]
        predicted = sum(cm[r][c] for r in range(k))
        support = sum(cm[c])
        pr = tp / predicted if predicted else 0.0
        rc = tp / support if support else 0.0
        precision.append(pr)
        recall.append(rc)
        f1.append(2 * pr * rc / (pr + rc) if pr + rc else 0.0)
        if predicted or support:
            seen.append(c)
    macro = sum(f1[c] for c in seen) / len(seen)
    acc = sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)
    return acc, cm, precision, recall, f1, macro


def _loop_ece(conf, correct, bins):
    edges = [i / bins for i in range(bins + 1)]
    total = 0.0
    for b in range(bins):
        members = [i for i, c in enumerate(conf) if (edges[b] < c <= edges[b + 1]) or (b == 0 and c == 0.0)]
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            mean_c = sum(conf[i] for i in members) / len(members)
            total += len(members) / len(conf) * abs(acc - mean_c)
    return total


def test_hand_worked_two_class_example():
    # 6 samples: TP(1)=3, FN(1)=1 (a 1 predicted 0), FP(1)=1 (a 0 predicted 1), TN=1.
    y_true = [1, 1, 1, 1, 0, 0]
    y_pred = [1, 1, 1, 0, 1, 0]
    r = classification_report(y_true, y_pred, num_classes=2)
    assert r.accuracy == pytest.approx(4 / 6)
    assert r.confusion == ((1, 1), (1, 3))
    assert r.precision == pytest.approx((1 / 2, 3 / 4))
    assert r.recall == pytest.approx((1 / 2, 3 / 4))
    assert r.macro_f1 == pytest.approx((0.5 + 0.75) / 2)
    assert r.support == (2, 4) and r.predicted == (2, 4)


def test_metrics_equal_loop_recomputation_on_random_predictions():
    rng = np.random.default_rng(3)
    k = 4
    y_true = rng.integers(0, k, 500)
    # A biased predictor: right 60% of the time, else a random class, never predicting class 3.
    y_pred = np.where(rng.random(500) < 0.6, y_true, rng.integers(0, k, 500))
    y_pred = np.where(y_pred == 3, 2, y_pred)
    acc, cm, precision, recall, f1, macro = _loop_metrics(y_true.tolist(), y_pred.tolist(), k)
    r = classification_report(y_true, y_pred, k)
    assert r.accuracy == pytest.approx(acc)
    assert [list(row) for row in r.confusion] == cm
    assert r.precision == pytest.approx(precision)
    assert r.recall == pytest.approx(recall)
    assert r.f1 == pytest.approx(f1)
    assert r.macro_f1 == pytest.approx(macro)
    assert r.precision[3] == 0.0  # never predicted: zero_division = 0
    assert confusion_matrix(y_true, y_pred, k).tolist() == cm


def test_class_absent_and_never_predicted_is_left_out_of_macro_f1():
    r = classification_report([0, 1, 1], [0, 1, 0], num_classes=3)
    f1_0 = 2 * (1 / 2 * 1) / (1 / 2 + 1)
    f1_1 = 2 * (1 * 1 / 2) / (1 + 1 / 2)
    assert r.macro_f1 == pytest.approx((f1_0 + f1_1) / 2)
    assert r.f1[2] == 0.0 and r.support[2] == 0


def test_to_dict_names_classes():
    d = classification_report([0, 1], [0, 0], 2).to_dict(("neg", "pos"))
    assert d["per_class"]["pos"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}
    assert d["confusion_matrix"] == [[1, 0], [1, 0]]
    with pytest.raises(ValueError, match="2 label names"):
        classification_report([0, 1], [0, 0], 2).to_dict(("only-one",))


def test_ece_hand_worked():
    # bins=4: (0,.25] (.25,.5] (.5,.75] (.75,1]
    conf = [0.3, 0.6, 0.7, 0.9, 1.0]
    correct = [0, 1, 0, 1, 1]
    # bin1: {0.3} acc 0, conf .3 -> 1/5 * .3;  bin2: {.6, .7} acc .5, conf .65 -> 2/5 * .15;
    # bin3: {.9, 1} acc 1, conf .95 -> 2/5 * .05
    expected = 0.2 * 0.3 + 0.4 * 0.15 + 0.4 * 0.05
    assert expected_calibration_error(conf, correct, bins=4) == pytest.approx(expected)


@pytest.mark.parametrize("bins", [1, 10, 15, 20])
def test_ece_equals_loop_recomputation(bins):
    rng = np.random.default_rng(bins)
    conf = rng.uniform(0.5, 1.0, 400)
    conf[:5] = [0.6, 0.8, 1.0, 0.5, 0.75]  # values on or near bin edges
    correct = (rng.random(400) < conf - 0.1).astype(int)
    assert expected_calibration_error(conf, correct, bins) == pytest.approx(
        _loop_ece(conf.tolist(), correct.tolist(), bins)
    )


def test_edge_value_falls_in_the_lower_bin():
    # 0.6 with 5 bins belongs to (0.4, 0.6], not (0.6, 0.8]; 0.0 belongs to the first bin.
    t = fit_confidence_calibration([0.6, 0.0], [1, 0], bins=5)
    assert t.counts == (1, 0, 1, 0, 0)


def test_calibration_table_round_trip_and_estimate():
    t = fit_confidence_calibration([0.55, 0.65, 0.62, 0.95, 0.97, 0.99], [0, 1, 1, 1, 1, 0], bins=5)
    assert t.counts == (0, 0, 1, 2, 3)
    assert t.accuracy == (None, None, 0.0, 1.0, pytest.approx(2 / 3))
    again = CalibrationTable.from_dict(t.to_dict())
    assert again == t
    assert pickle.loads(pickle.dumps(t)) == t
    assert t.ece == pytest.approx(
        expected_calibration_error([0.55, 0.65, 0.62, 0.95, 0.97, 0.99], [0, 1, 1, 1, 1, 0], 5)
    )
    # 0.96 -> bin 4 (acc 2/3); 0.7 -> bin 3 (acc 1); 0.3 -> empty bin 1 -> counts for itself.
    assert estimate_accuracy(t, [0.96, 0.7, 0.3]) == pytest.approx((2 / 3 + 1.0 + 0.3) / 3)


def test_estimate_on_the_fitting_data_is_its_accuracy():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1, 300)
    correct = rng.random(300) < conf
    t = fit_confidence_calibration(conf, correct, 15)
    assert estimate_accuracy(t, conf) == pytest.approx(correct.mean())


def test_comparison_against_hand_values():
    a = np.array([[0.9, 0.1], [0.45, 0.55], [0.2, 0.8]])
    b = np.array([[0.85, 0.15], [0.6, 0.4], [0.2, 0.8]])
    c = compare_probabilities(a, b)
    assert c.agreement == pytest.approx(2 / 3) and c.disagreements == 1
    assert c.max_probability_change == pytest.approx(0.15) and c.max_change_index == 1
    assert c.mean_probability_change == pytest.approx((0.05 + 0.15 + 0.0) / 3)
    assert max_abs_probability_change(a, b) == pytest.approx(0.15)
    assert agreement([0, 1, 1, 2], [0, 1, 2, 2]) == 0.75


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: classification_report([0, 1], [0], 2), "same length"),
        (lambda: classification_report([], [], 2), "empty"),
        (lambda: classification_report([0, 2], [0, 1], 2), r"\[0, 1\]"),
        (lambda: classification_report([0.0, 1.0], [0, 1], 2), "integer"),
        (lambda: expected_calibration_error([0.5, 1.2], [1, 1]), r"\[0, 1\]"),
        (lambda: expected_calibration_error([0.5], [1], bins=0), "positive integer"),
        (lambda: fit_confidence_calibration([], []), "no samples"),
        (lambda: compare_probabilities(np.ones((2, 2)), np.ones((3, 2))), "same shape"),
        (
            lambda: CalibrationTable(bins=2, counts=(1, 0), accuracy=(None, None), mean_confidence=(0.5, None)),
            "exactly when",
        ),
    ],
)
def test_invalid_inputs_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_docstring_examples_run():
    failures, tried = doctest.testmod(cls)
    assert tried > 0 and failures == 0
    assert not math.isnan(cls.estimate_accuracy(cls.fit_confidence_calibration([0.5], [1], 2), [0.9]))
