"""Black-box shift detection (BBSD) on class probabilities: a KS test per class, corrected across classes.

"Failing Loudly" (Rabanser, Günnemann and Lipton, NeurIPS 2019) found univariate KS tests on a classifier's
softmax outputs among the most reliable detectors of input shift: the served model has already reduced the
text to the few numbers that matter for its task. Each class's predicted probability is tested against the
reference's with the statistic and asymptotic p-value of input drift (:class:`detectors.ks.KSDrift`, which
this wraps), the p-values adjusted across classes, and a class is drifted when its adjusted p-value is below
``alpha`` **and** its statistic is at least ``min_effect``.

With two classes the two probabilities are ``p`` and ``1 - p``: both tests give the same statistic and
p-value, and the correction counts one test twice (conservative, by at most a factor of 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from detectors.base import FeatureDrift, as_dict, json_field
from detectors.ks import KSDrift

__all__ = ["ProbabilityDrift", "ProbabilityDriftResult"]


@dataclass(frozen=True, slots=True)
class ProbabilityDriftResult:
    """Per-class KS tests of a window's predicted probabilities, adjusted across classes."""

    drifted: bool
    correction: str
    alpha: float
    min_effect: float
    classes: tuple[FeatureDrift, ...] = json_field(key_by="feature")

    def to_dict(self) -> dict:
        """Return ``drift.probabilities`` of the window result (classes keyed by name)."""
        return as_dict(self)


class ProbabilityDrift:
    """KS test per class probability of a window against the reference's (BBSD).

    Parameters
    ----------
    reference : Mapping[str, numpy.ndarray]
        Reference probabilities per class name, one-dimensional; non-finite values are left out.
    alpha : float, default 0.01
        Significance level of the adjusted p-values, in (0, 1).
    min_effect : float, default 0.1
        Smallest KS statistic that counts as drift, in [0, 1].
    correction : {"bh", "bonferroni"}, default "bh"
        Multiple-testing correction across classes.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = rng.dirichlet([6.0, 3.0, 1.0], 3000)
    >>> detector = ProbabilityDrift.from_matrix(p, ("positive", "negative", "neutral"))
    >>> detector.test_matrix(rng.dirichlet([6.0, 3.0, 1.0], 500)).drifted
    False
    >>> result = detector.test_matrix(rng.dirichlet([3.0, 3.0, 4.0], 500))
    >>> result.drifted, sorted(c.feature for c in result.classes if c.drifted)
    (True, ['neutral', 'positive'])
    >>> sorted(result.to_dict()["classes"]["neutral"])[:3]
    ['drifted', 'min_effect', 'p_value']
    """

    def __init__(
        self,
        reference: Mapping[str, np.ndarray],
        *,
        alpha: float = 0.01,
        min_effect: float = 0.1,
        correction: str = "bh",
    ):
        self._ks = KSDrift(reference, alpha=alpha, min_effect=min_effect, correction=correction)
        self.alpha, self.min_effect, self.correction = self._ks.alpha, self._ks.min_effect, self._ks.correction

    @classmethod
    def from_matrix(cls, probabilities: np.ndarray, classes: Sequence[str], **kwargs) -> ProbabilityDrift:
        """Build from an ``(n, k)`` probability matrix whose columns are ``classes``."""
        return cls(_columns(probabilities, classes), **kwargs)

    @property
    def classes(self) -> tuple[str, ...]:
        """The reference's class names, in the order results list them."""
        return self._ks.feature_names

    def test(self, window: Mapping[str, np.ndarray]) -> ProbabilityDriftResult:
        """Test one window's probabilities per class; classes missing from the reference are ignored."""
        result = self._ks.test(window)
        return ProbabilityDriftResult(result.drifted, self.correction, self.alpha, self.min_effect, result.features)

    def test_matrix(self, probabilities: np.ndarray) -> ProbabilityDriftResult:
        """Test an ``(n, k)`` probability matrix whose columns are :attr:`classes`."""
        return self.test(_columns(probabilities, self.classes))

    def __repr__(self) -> str:
        return (f"ProbabilityDrift(classes={list(self.classes)}, alpha={self.alpha}, "
                f"min_effect={self.min_effect}, correction={self.correction!r})")


def _columns(probabilities: np.ndarray, classes: Sequence[str]) -> dict[str, np.ndarray]:
    p = np.asarray(probabilities, dtype=np.float64)
    classes = tuple(str(c) for c in classes)
    if p.ndim != 2 or p.shape[1] != len(classes):
        raise ValueError(f"probabilities must have shape (n, {len(classes)}) for classes {list(classes)}, "
                         f"got {p.shape}.")
    return {c: p[:, j] for j, c in enumerate(classes)}
