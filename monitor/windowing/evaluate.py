"""Close a window: run the detectors against the reference and build its :class:`~monitor.results.WindowResult`."""

from __future__ import annotations

import numpy as np

from detectors.classes import PredictionShift
from detectors.evidence import quantile_sketch, token_shifts
from detectors.confidence import ConfidenceShift, low_confidence_threshold
from detectors.embedding import EmbeddingDrift
from detectors.ks import KSDrift
from detectors.probabilities import ProbabilityDrift
from detectors.latency import latency_summary
from detectors.text_features import BINARY_FEATURES
from monitor.config import DetectConfig, EmbeddingConfig
from monitor.ingest.reference import Profile
from monitor.results import ConfidenceSummary, DriftVerdicts, Exemplar, WindowEvidence, WindowResult
from monitor.windowing.accumulator import CONFIDENCE_COL, FIRST_FEATURE_COL, FIXED_POINT, LATENCY_COL, WindowAccumulator
from monitor.windowing.evidence import MAX_POINTS, EvidencePlan
from monitor.windowing.text_embeddings import ENCODER_ERROR

__all__ = ["StreamDetectors", "window_result", "window_evidence"]


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


def window_evidence(acc: WindowAccumulator, plan: EvidencePlan, *, feature_names: tuple[str, ...],
                    classes: tuple[str, ...]) -> WindowEvidence:
    """The evidence of the closed window ``acc`` (docs/evidence.md): its sample's quantile sketches, the shifted
    tokens against the profile's, its exemplars, the first two components of its embedding sample."""
    rows = acc.reservoir.rows
    dist = {f"feature:{name}": quantile_sketch(rows[:, FIRST_FEATURE_COL + i]) for i, name in enumerate(feature_names)}
    dist["confidence"] = quantile_sketch(rows[:, CONFIDENCE_COL])
    first = FIRST_FEATURE_COL + len(feature_names)
    if rows.shape[1] == first + len(classes):  # (a window opened before its profile had probabilities: none)
        dist.update({f"probability:{c}": quantile_sketch(rows[:, first + j]) for j, c in enumerate(classes)})
    ev = acc.evidence
    rising = falling = exemplars = ()
    source = None
    if ev is not None and ev.source is not None and ev.source == plan.source:
        source, e = ev.source, plan.explain
        rising, falling = token_shifts(plan.window_counts(ev), ev.texts, plan.reference, plan.reference_events,
                                       min_events=e.min_token_events, top=e.top_tokens)
    if ev is not None:
        exemplars = tuple(Exemplar(position=p, request_id=r, score=round(s, 4)) for s, p, r in ev.exemplars.kept)
    return WindowEvidence(distributions=dist, tokens_rising=rising, tokens_falling=falling, token_source=source,
                          exemplars=exemplars, exemplar_score=plan.score_name if exemplars else None,
                          embedding_points=_points(acc))


def _points(acc: WindowAccumulator) -> tuple[tuple[float, float], ...]:
    """The first two components of the window's embedding sample (at most MAX_POINTS, rounded)."""
    sample = acc.embeddings
    if sample is None or sample.width < 2:
        return ()
    xy = sample.rows[:MAX_POINTS, :2]
    xy = np.round(xy[np.isfinite(xy).all(axis=1)], 4)
    return tuple((float(x), float(y)) for x, y in xy.tolist())
