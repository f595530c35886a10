"""Pure statistics for nlpmon: numpy/scipy in, frozen result objects out.

Nothing in this package reads a clock, opens a file or a connection, or touches Prometheus; that is the job
of ``monitor`` (side effects) and ``sinks`` (outputs). One module, one idea:

==================== ==========================================================================
``ks``               input drift: per-feature two-sample KS test (:class:`KSDrift`); the presorted
                     reference every KS test reuses (:class:`KSReference`)
``confidence``       confidence shift (:class:`ConfidenceShift`) and :func:`entropy_bits`
``classes``          predicted-class shift: chi-square, PSI, JS (:class:`PredictionShift`)
``correction``       multiple-testing correction across features (:func:`adjust_p_values`)
``latency``          latency percentiles (:func:`latency_summary`)
``base``             the frozen result objects and threshold validation
``text_features``    numeric features of input texts
``classification``   quality of a classifier on labelled data
``ab``               A/B checks: sample-ratio mismatch, fixed-horizon tests, sample size, guardrails
``sequential``       always-valid A/B inference: mixture SPRT p-value and confidence sequence;
                     running moments (:func:`welford_update`)
``shadow``           served against shadow model: agreement, differences, KS (:func:`summarise_counts`)
``embedding``        semantic drift: PCA projection of embeddings, KS per component + MMD
                     permutation test (:class:`EmbeddingDrift`)
``proportions``      0/1 features as proportions: two-proportion z-test (:class:`ProportionReference`),
                     used by :class:`KSDrift` for its ``binary`` features
``probabilities``    class-probability shift, BBSD: KS per class probability (:class:`ProbabilityDrift`)
``vocabulary``       hashed, bounded reference vocabulary and the out-of-vocabulary rate
                     (:class:`HashedVocabulary`)
==================== ==========================================================================

Every result's ``to_dict()`` is its part of the window-result JSON described in ``docs/results.md``.
"""

from detectors.base import (
    ConfidenceShiftResult,
    FeatureDrift,
    InputDriftResult,
    LatencySummary,
    PredictionShiftResult,
)
from detectors.classes import PredictionShift
from detectors.confidence import ConfidenceShift, entropy_bits
from detectors.correction import CORRECTIONS, adjust_p_values
from detectors.ks import KSDrift, ks_p_value, ks_statistic_sorted
from detectors.latency import latency_summary

__all__ = [
    "KSDrift",
    "ConfidenceShift",
    "PredictionShift",
    "FeatureDrift",
    "InputDriftResult",
    "ConfidenceShiftResult",
    "PredictionShiftResult",
    "LatencySummary",
    "adjust_p_values",
    "CORRECTIONS",
    "entropy_bits",
    "ks_p_value",
    "ks_statistic_sorted",
    "latency_summary",
]
