"""Close a window: run the detectors against the reference and build its :class:`~monitor.results.WindowResult`."""

from __future__ import annotations

import numpy as np

from detectors.classes import PredictionShift
from detectors.confidence import ConfidenceShift, low_confidence_threshold
from detectors.embedding import EmbeddingDrift
from detectors.ks import KSDrift
from detectors.probabilities import ProbabilityDrift
from detectors.latency import latency_summary
from detectors.text_features import BINARY_FEATURES
from monitor.config import DetectConfig, EmbeddingConfig
from monitor.ingest.reference import Profile
from monitor.results import ConfidenceSummary, DriftVerdicts, WindowResult
from monitor.windowing.accumulator import CONFIDENCE_COL, FIRST_FEATURE_COL, FIXED_POINT, LATENCY_COL, WindowAccumulator
from monitor.windowing.text_embeddings import ENCODER_ERROR

__all__ = ["StreamDetectors", "window_result"]


class StreamDetectors:
    """The detectors of one model, built once from its reference profile (references sorted once)."""

    def __init__(self, profile: Profile, detect: DetectConfig, embedding: EmbeddingConfig = EmbeddingConfig()):
        self.profile = profile
        reference = {name: profile.samples[name] for name in profile.feature_names if name in profile.samples}
        self.input = KSDrift(
            reference,
            alpha=detect.alpha,
            min_effect=detect.min_effect,
            correction=detect.correction,
            # 0/1 features as proportions, with an absolute floor (docs/results.md, *Input drift*)
            binary=[name for name in BINARY_FEATURES if name in reference],
            min_proportion_delta=detect.min_proportion_delta,
        )
        self.confidence = (
            ConfidenceShift(
                profile.confidence,
                alpha=detect.alpha,
                min_effect=detect.min_effect,
                low_threshold=low_confidence_threshold(len(profile.class_counts), detect.low_confidence_threshold),
            )
            if profile.confidence.size
            else None
        )
        self.prediction = (
            PredictionShift(profile.class_counts, alpha=detect.alpha, min_psi=detect.min_psi)
            if profile.class_counts
            else None
        )
        # BBSD: the windows' rows carry these classes' probabilities after the features (StreamState).
        self.probabilities = (
            ProbabilityDrift(profile.probabilities, alpha=detect.alpha, min_effect=detect.min_effect,
                             correction=detect.correction)
            if profile.probabilities
            else None
        )  # fmt: skip
        # Embedding drift on the windows' projected embeddings (the profile's projection and reference).
        self.embedding = (
            EmbeddingDrift(profile.embedding_projection, profile.embedding_reference, alpha=detect.alpha,
                           min_effect=detect.min_effect, correction=detect.correction,
                           permutations=embedding.permutations, max_mmd_n=embedding.max_mmd_n)
            if profile.embedding
            else None
        )  # fmt: skip


def _finite(a: np.ndarray) -> np.ndarray:
    return a[np.isfinite(a)]


def window_result(
    acc: WindowAccumulator,
    *,
    feature_names: tuple[str, ...],
    detectors: StreamDetectors | None,
    min_events: int,
    partial: bool,
    late: int,
    invalid: int,
) -> WindowResult:
    rows = acc.reservoir.rows
    time_window = acc.kind == "time"
    if detectors is None:
        skip_reason = "no_reference"
    elif acc.events < min_events:
        skip_reason = "too_few_events"
    else:
        skip_reason = None
    drift = DriftVerdicts() if skip_reason is not None else _test(acc, rows, feature_names, detectors)
    return WindowResult(
        model=acc.model,
        version=acc.version,
        segment=acc.segment or None,
        window_kind=acc.kind,
        window_start_ms=acc.start_ms if time_window else acc.first_ts_ms,
        window_end_ms=acc.end_ms if time_window else acc.last_ts_ms,
        partial=partial,
        events=acc.events,
        invalid=invalid,
        late=late,
        sampled=acc.reservoir.sampled,
        reservoir_size=acc.reservoir.capacity,
        tested=skip_reason is None,
        skip_reason=skip_reason,
        latency_ms=latency_summary(_finite(rows[:, LATENCY_COL])),
        confidence=ConfidenceSummary(
            mean=acc.confidence_sum / FIXED_POINT / acc.confidence_n if acc.confidence_n else None,
            low_ratio=acc.low_confidence_n / acc.confidence_n if acc.confidence_n else None,
            entropy_mean=acc.entropy_sum / FIXED_POINT / acc.entropy_n if acc.entropy_n else None,
            count=acc.confidence_n,
        ),
        predictions=dict(sorted(acc.class_counts.items())),
        error_rate=acc.errors / acc.events if acc.events else None,
        accuracy=acc.correct / acc.labelled if acc.labelled else None,
        labelled=acc.labelled,
        drift=drift,
        drifted=drift.any,
        window_seq=None if time_window else acc.seq,
    )


def _test(acc: WindowAccumulator, rows: np.ndarray, feature_names: tuple[str, ...], detectors: StreamDetectors) -> DriftVerdicts:
    window = {name: rows[:, FIRST_FEATURE_COL + i] for i, name in enumerate(feature_names)}
    confidences = _finite(rows[:, CONFIDENCE_COL])
    probabilities = None
    if detectors.probabilities is not None:
        first = FIRST_FEATURE_COL + len(feature_names)
        columns = detectors.profile.probability_classes
        if rows.shape[1] == first + len(columns):  # a window opened before its profile had probabilities
            result = detectors.probabilities.test({c: rows[:, first + j] for j, c in enumerate(columns)})
            probabilities = result if result.classes else None  # None: no event logged probabilities
    embedding = skipped = None
    sample = acc.embeddings
    if detectors.embedding is not None and sample is not None and np.isnan(sample.rows).any():
        skipped = ENCODER_ERROR  # a sampled text the encoder failed on (windowing/text_embeddings.py)
    elif detectors.embedding is not None and sample is not None and sample.rows.shape[0] >= 2:
        # The window's identity seeds the MMD's subsample and permutations: a replay gets the same p-value.
        embedding = detectors.embedding.test_projected(sample.rows, seed=sample.seed)
    return DriftVerdicts(
        input=detectors.input.test(window),
        confidence=detectors.confidence.test(confidences)
        if detectors.confidence is not None and confidences.size else None,
        prediction=detectors.prediction.test(dict(acc.class_counts))
        if detectors.prediction is not None and acc.class_counts else None,
        probabilities=probabilities,
        embedding=embedding,
        embedding_skipped=skipped,
    )  # fmt: skip
