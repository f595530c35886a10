"""Quality of a classifier on labelled data, calibration, and agreement between two models.

Everything here is pure: integer labels and probability arrays in, frozen results out. Classes are the
integers ``0 .. num_classes - 1``; names are attached by the caller.

Conventions (the same as scikit-learn's with ``zero_division=0``, written out so nobody has to look them up):

- precision of a class that is never predicted is 0.0; recall of a class with no support is 0.0;
- macro-F1 averages the per-class F1 over the classes that occur in ``y_true`` or ``y_pred``; a class that
  is neither present nor predicted says nothing about the model and is left out;
- calibration bins are equal-width on ``[0, 1]`` with ``edges = numpy.linspace(0, 1, B + 1)``; bin ``i``
  holds confidences ``c`` with ``edges[i] < c <= edges[i + 1]``, and the first bin also holds exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ClassificationReport",
    "CalibrationTable",
    "ModelComparison",
    "accuracy",
    "confusion_matrix",
    "classification_report",
    "expected_calibration_error",
    "fit_confidence_calibration",
    "estimate_accuracy",
    "agreement",
    "max_abs_probability_change",
    "compare_probabilities",
]

DEFAULT_CALIBRATION_BINS = 15


def _labels(y: np.ndarray | list, name: str) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {t.size} and {p.size}")
    if t.size == 0:
        raise ValueError("cannot score an empty set of predictions")
    return t, p


def _probabilities(p, name: str) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples, classes) array, got shape {a.shape}")
    return a


def _confidences(confidence, name: str = "confidence") -> np.ndarray:
    c = np.asarray(confidence, dtype=np.float64)
    if c.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {c.shape}")
    if c.size and (not np.all(np.isfinite(c)) or c.min() < 0.0 or c.max() > 1.0):
        raise ValueError(f"{name} values must be finite probabilities in [0, 1]")
    return c


def _check_bins(bins: int) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    return int(bins)


def _bin_edges(bins: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, bins + 1)


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    # Bin i holds edges[i] < c <= edges[i + 1]: the number of interior edges strictly below c. Comparing
    # against the edges themselves (not ceil(c * bins)) keeps c == 0.3 out of the (0.3, 0.4] bin.
    return np.searchsorted(_bin_edges(bins)[1:-1], confidence, side="left")


def accuracy(y_true, y_pred) -> float:
    """Share of predictions equal to the label."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Return the ``(num_classes, num_classes)`` count matrix; rows are true classes, columns predicted.

    Examples
    --------
    >>> confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1], num_classes=2).tolist()
    [[1, 1], [0, 2]]
    """
    t, p = _pair(y_true, y_pred)
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    lo, hi = min(t.min(), p.min()), max(t.max(), p.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"class indices must lie in [0, {num_classes - 1}], found {int(lo if lo < 0 else hi)}")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class ClassificationReport:
    """Accuracy, macro-F1 and per-class precision/recall/F1 of one set of predictions."""

    n: int
    accuracy: float
    macro_f1: float
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    support: tuple[int, ...]
    predicted: tuple[int, ...]
    confusion: tuple[tuple[int, ...], ...]

    @property
    def num_classes(self) -> int:
        return len(self.support)

    def to_dict(self, labels: tuple[str, ...] | None = None) -> dict:
        """Return a JSON-ready dict; per-class figures are keyed by ``labels`` (default ``"0"``, ``"1"``, ...)."""
        names = labels if labels is not None else tuple(str(i) for i in range(self.num_classes))
        if len(names) != self.num_classes:
            raise ValueError(f"expected {self.num_classes} label names, got {len(names)}")
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": {
                name: {
                    "precision": self.precision[i],
                    "recall": self.recall[i],
                    "f1": self.f1[i],
                    "support": self.support[i],
                    "predicted": self.predicted[i],
                }
                for i, name in enumerate(names)
            },
            "confusion_matrix": [list(row) for row in self.confusion],
        }


def classification_report(y_true, y_pred, num_classes: int) -> ClassificationReport:
    """Score integer predictions against integer labels.

    Parameters
    ----------
    y_true, y_pred
        Class indices in ``[0, num_classes)``, one per sample.
    num_classes
        Number of classes the model can predict; per-class tuples have this length.

    Examples
    --------
    >>> r = classification_report([0, 0, 1, 1], [0, 1, 1, 1], num_classes=2)
    >>> r.accuracy, r.precision, r.recall
    (0.75, (1.0, 0.6666666666666666), (0.5, 1.0))
    >>> round(r.macro_f1, 4)
    0.7333
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1.0), 0.0)
    seen = (support + predicted) > 0
    n = int(cm.sum())
    return ClassificationReport(
        n=n,
        accuracy=float(tp.sum() / n),
        macro_f1=float(f1[seen].mean()),
        precision=tuple(float(x) for x in precision),
        recall=tuple(float(x) for x in recall),
        f1=tuple(float(x) for x in f1),
        support=tuple(int(x) for x in support),
        predicted=tuple(int(x) for x in predicted),
        confusion=tuple(tuple(int(x) for x in row) for row in cm),
    )


@dataclass(frozen=True)
class CalibrationTable:
    """Reliability table: per equal-width confidence bin, the sample count, accuracy and mean confidence.

    Fitted on labelled data (``fit_confidence_calibration``) and applied to unlabelled confidences
    (``estimate_accuracy``). Empty bins hold ``None`` accuracy and confidence.
    """

    bins: int
    counts: tuple[int, ...]
    accuracy: tuple[float | None, ...]
    mean_confidence: tuple[float | None, ...]

    def __post_init__(self):
        _check_bins(self.bins)
        for name in ("counts", "accuracy", "mean_confidence"):
            if len(getattr(self, name)) != self.bins:
                raise ValueError(
                    f"calibration table {name} must have {self.bins} entries, got {len(getattr(self, name))}"
                )
        for c, a, m in zip(self.counts, self.accuracy, self.mean_confidence):
            if c < 0:
                raise ValueError("calibration table counts must be non-negative")
            if (c == 0) != (a is None) or (c == 0) != (m is None):
                raise ValueError("a calibration bin has an accuracy and a mean confidence exactly when it has samples")

    @property
    def n(self) -> int:
        return int(sum(self.counts))

    @property
    def edges(self) -> tuple[float, ...]:
        return tuple(float(x) for x in _bin_edges(self.bins))

    @property
    def ece(self) -> float:
        """Expected calibration error of the data the table was fitted on."""
        n = self.n
        return float(sum(c / n * abs(a - m) for c, a, m in zip(self.counts, self.accuracy, self.mean_confidence) if c))

    def to_dict(self) -> dict:
        return {
            "bins": self.bins,
            "edges": list(self.edges),
            "counts": list(self.counts),
            "accuracy": list(self.accuracy),
            "mean_confidence": list(self.mean_confidence),
        }

    @classmethod
    def from_dict(cls, d: dict) -> CalibrationTable:
        """Rebuild a table from ``to_dict()`` output (``edges`` is derived and ignored)."""
        try:
            return cls(
                bins=int(d["bins"]),
                counts=tuple(int(x) for x in d["counts"]),
                accuracy=tuple(None if x is None else float(x) for x in d["accuracy"]),
                mean_confidence=tuple(None if x is None else float(x) for x in d["mean_confidence"]),
            )
        except KeyError as exc:
            raise ValueError(f"calibration table dict lacks {exc.args[0]!r}") from None


def fit_confidence_calibration(confidence, correct, bins: int = DEFAULT_CALIBRATION_BINS) -> CalibrationTable:
    """Bin top-class confidences and record how often the prediction was right in each bin.

    Examples
    --------
    >>> t = fit_confidence_calibration([0.55, 0.6, 0.95, 0.97], [False, True, True, True], bins=2)
    >>> t.counts, t.accuracy
    ((0, 4), (None, 0.75))
    """
    bins = _check_bins(bins)
    c = _confidences(confidence)
    ok = np.asarray(correct)
    if ok.shape != c.shape:
        raise ValueError(f"confidence and correct must have the same length, got {c.size} and {ok.size}")
    if c.size == 0:
        raise ValueError("cannot fit a calibration table on no samples")
    idx = _bin_index(c, bins)
    counts = np.bincount(idx, minlength=bins)
    hits = np.bincount(idx, weights=ok.astype(np.float64), minlength=bins)
    conf_sum = np.bincount(idx, weights=c, minlength=bins)
    return CalibrationTable(
        bins=bins,
        counts=tuple(int(x) for x in counts),
        accuracy=tuple(float(h / k) if k else None for h, k in zip(hits, counts)),
        mean_confidence=tuple(float(s / k) if k else None for s, k in zip(conf_sum, counts)),
    )


def expected_calibration_error(confidence, correct, bins: int = DEFAULT_CALIBRATION_BINS) -> float:
    """Return ECE = sum over bins of (bin share) * |bin accuracy - bin mean confidence|.

    Examples
    --------
    >>> round(expected_calibration_error([0.9, 0.9, 0.6, 0.6], [1, 1, 1, 0], bins=10), 4)
    0.1
    """
    return fit_confidence_calibration(confidence, correct, bins).ece


def estimate_accuracy(table: CalibrationTable, confidence) -> float:
    """Estimate accuracy on unlabelled predictions from their confidences and a fitted table.

    Each confidence counts for the accuracy its bin had on the labelled data. A bin that was empty there
    has no evidence, so such a confidence counts for itself (as if the model were calibrated).

    Examples
    --------
    >>> t = fit_confidence_calibration([0.55, 0.6, 0.95, 0.97], [False, True, True, True], bins=2)
    >>> estimate_accuracy(t, [0.99, 0.98])
    0.75
    """
    c = _confidences(confidence)
    if c.size == 0:
        raise ValueError("cannot estimate accuracy from no confidences")
    idx = _bin_index(c, table.bins)
    per_bin = np.array([np.nan if a is None else a for a in table.accuracy], dtype=np.float64)
    est = per_bin[idx]
    est = np.where(np.isnan(est), c, est)
    return float(est.mean())


def _check_paired(a: np.ndarray, b: np.ndarray, what: str) -> None:
    """Refuse the two sides of a comparison when their samples do not pair up, or there are none."""
    if a.shape != b.shape:
        if a.ndim == 1:
            raise ValueError(f"{what} arrays must have the same length, got {a.size} and {b.size}")
        raise ValueError(f"{what} arrays must have the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError(f"cannot compare empty {what} arrays")


def agreement(pred_a, pred_b) -> float:
    """Share of samples on which two models predict the same class."""
    a, b = _labels(pred_a, "pred_a"), _labels(pred_b, "pred_b")
    _check_paired(a, b, "prediction")
    return float(np.mean(a == b))


def max_abs_probability_change(probs_a, probs_b) -> float:
    """Largest absolute difference between two ``(samples, classes)`` probability arrays, over all entries."""
    a, b = _probabilities(probs_a, "probs_a"), _probabilities(probs_b, "probs_b")
    _check_paired(a, b, "probability")
    return float(np.max(np.abs(a - b)))


@dataclass(frozen=True)
class ModelComparison:
    """How two sets of class probabilities for the same samples differ."""

    n: int
    agreement: float
    disagreements: int
    max_probability_change: float
    max_change_index: int
    mean_probability_change: float

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "agreement": self.agreement,
            "disagreements": self.disagreements,
            "max_probability_change": self.max_probability_change,
            "max_change_index": self.max_change_index,
            "mean_probability_change": self.mean_probability_change,
        }


def compare_probabilities(probs_a, probs_b) -> ModelComparison:
    """Compare two models' probabilities: arg-max agreement and per-sample largest probability change.

    ``mean_probability_change`` is the mean over samples of each sample's largest absolute change.

    Examples
    --------
    >>> c = compare_probabilities([[0.9, 0.1], [0.4, 0.6]], [[0.8, 0.2], [0.6, 0.4]])
    >>> c.agreement, c.disagreements, c.max_change_index, round(c.max_probability_change, 6)
    (0.5, 1, 1, 0.2)
    """
    a, b = _probabilities(probs_a, "probs_a"), _probabilities(probs_b, "probs_b")
    if a.shape != b.shape:
        raise ValueError(f"probability arrays must have the same shape, got {a.shape} and {b.shape}")
    if a.shape[0] == 0:
        raise ValueError("cannot compare empty probability arrays")
    per_sample = np.max(np.abs(a - b), axis=1)
    same = np.argmax(a, axis=1) == np.argmax(b, axis=1)
    worst = int(np.argmax(per_sample))
    return ModelComparison(
        n=int(a.shape[0]),
        agreement=float(same.mean()),
        disagreements=int((~same).sum()),
        max_probability_change=float(per_sample[worst]),
        max_change_index=worst,
        mean_probability_change=float(per_sample.mean()),
    )
