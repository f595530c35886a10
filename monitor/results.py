"""The typed results that leave the pipeline: what sinks read, and what becomes JSON at the edge.

A closed window is a frozen :class:`WindowResult` holding integer milliseconds and the detectors' own result
objects; sinks read its fields (``sinks/prometheus``, ``sinks/sql``), and ``to_dict()`` runs only where JSON
leaves the process: replay output, the SQL ``result`` column, the output topic and ``/status``. The field
order of each class is the documented key order of its JSON (docs/results.md), written by
:func:`detectors.base.as_dict`. This module imports nothing from the rest of ``monitor`` (sinks import it)
but its re-evaluation part, :mod:`monitor.results_reeval` (``ReevalReport``), which it re-exports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

import numpy as np

from detectors.ab import FixedHorizonResult, GuardrailResult, SRMResult
from detectors.accuracy_estimate import AccuracyEstimate
from detectors.base import (
    ConfidenceShiftResult,
    InputDriftResult,
    LatencySummary,
    PredictionShiftResult,
    as_dict,
    json_field,
)  # fmt: skip
from detectors.embedding import EmbeddingDriftResult
from detectors.evidence import QuantileSketch, TokenShift
from detectors.probabilities import ProbabilityDriftResult
from detectors.sequential import SequentialResult
from detectors.shadow import ShadowSummary
from monitor.results_reeval import LabelFreeEstimate, ReevalReport, WindowEstimate

__all__ = ["WindowResult", "ConfidenceSummary", "DriftVerdicts", "ExperimentResult", "VariantFigures", "Comparison",
           "ShadowResult", "BatchResults", "iso_ms", "RESULT_SCHEMA", "Sink", "DeadLetter", "PipelineStats",
           "ClassFigures", "LabelsResult", "ReevalReport", "LabelFreeEstimate", "WindowEstimate", "Exemplar",
           "WindowEvidence", "EVIDENCE_SCHEMA"]

RESULT_SCHEMA = 1


def iso_ms(ts_ms: int | None) -> str | None:
    """Return epoch milliseconds as RFC 3339 UTC with milliseconds (``2026-11-25T10:00:00.000Z``)."""
    if ts_ms is None:
        return None
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


EVIDENCE_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class Exemplar:
    """Where one of a window's most unusual events is: never its text (docs/evidence.md, *Exemplars*).

    ``position`` is ``topic/partition@offset`` for Kafka, ``path:line`` for a file (the record's position as
    the pipeline saw it); ``score`` is how unlike the reference it is (``WindowEvidence.exemplar_score``
    says by what), higher is more unusual.
    """

    position: str
    request_id: str | None
    score: float

    def to_dict(self) -> dict:
        return as_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Exemplar":
        return cls(position=d["position"], request_id=d.get("request_id"), score=float(d["score"]))


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowEvidence:
    """The evidence of one closed window, stored beside its result (``window_evidence``, docs/evidence.md).

    ``distributions``: a quantile sketch of the window per numeric series, keyed ``feature:<name>``,
    ``confidence`` and ``probability:<class>`` (the reference's are in the profile). ``tokens_rising`` /
    ``tokens_falling``: the most shifted tokens that passed the privacy floor, strongest first;
    ``token_source`` is ``"tokenizer"``, ``"words"`` or ``None`` (``explain.tokens = false`` or no text).
    ``exemplars``: pointers to the most unusual events, most unusual first; ``exemplar_score`` names the
    score (``"embedding"``, ``"features"``). ``embedding_points``: the first two components of the window's
    kept embedding sample (for the report's scatter), empty without embeddings.
    """

    schema: int = EVIDENCE_SCHEMA
    distributions: Mapping[str, QuantileSketch]
    tokens_rising: tuple[TokenShift, ...] = ()
    tokens_falling: tuple[TokenShift, ...] = ()
    token_source: str | None = None
    exemplars: tuple[Exemplar, ...] = ()
    exemplar_score: str | None = None
    embedding_points: tuple[tuple[float, float], ...] = ()

    def to_dict(self) -> dict:
        return as_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "WindowEvidence":
        """Read back what :meth:`to_dict` wrote (the ``window_evidence`` row's JSON)."""
        return cls(
            schema=int(d.get("schema", EVIDENCE_SCHEMA)),
            distributions={k: QuantileSketch.from_dict(v) for k, v in d.get("distributions", {}).items()},
            tokens_rising=tuple(TokenShift.from_dict(t) for t in d.get("tokens_rising", ())),
            tokens_falling=tuple(TokenShift.from_dict(t) for t in d.get("tokens_falling", ())),
            token_source=d.get("token_source"),
            exemplars=tuple(Exemplar.from_dict(e) for e in d.get("exemplars", ())),
            exemplar_score=d.get("exemplar_score"),
            embedding_points=tuple((float(x), float(y)) for x, y in d.get("embedding_points", ())),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ConfidenceSummary:
    """``confidence`` of a window result: exact mean, low-confidence share and mean entropy; ``None`` without any."""

    mean: float | None
    low_ratio: float | None
    entropy_mean: float | None
    count: int

    def to_dict(self) -> dict:
        return as_dict(self)


@dataclass(frozen=True, slots=True)
class DriftVerdicts:
    """``drift`` of a window result: each detector's result, ``None`` where it did not run."""

    input: InputDriftResult | None = None
    confidence: ConfidenceShiftResult | None = None
    prediction: PredictionShiftResult | None = None
    probabilities: ProbabilityDriftResult | None = None
    embedding: EmbeddingDriftResult | None = None
    # Why the embedding test did not run although the profile has a projection ("encoder_error"); key absent otherwise.
    embedding_skipped: str | None = json_field(omit_none=True, default=None)

    @property
    def any(self) -> bool:
        """True when any detector that ran found drift (the window's ``drifted``)."""
        return any(d is not None and d.drifted
                   for d in (self.input, self.confidence, self.prediction, self.probabilities, self.embedding))

    def to_dict(self) -> dict:
        return as_dict(self)


NOT_TESTED = DriftVerdicts()


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowResult:
    """One closed window of a (model, version[, segment]) stream (docs/results.md); fields in the JSON's key order.

    ``window_start_ms``/``window_end_ms`` are the window's bounds for time windows and the first/last event
    times for count windows; ``window_seq`` is set for count windows only (it is not in a time window's JSON).
    """

    result_schema: int = RESULT_SCHEMA
    model: str
    version: str
    # Only with window.by_segment, for events that carry one: segment-less results keep their JSON.
    segment: str | None = json_field(omit_none=True, default=None)
    window_kind: str
    window_start_ms: int | None = json_field(name="window_start", encode=iso_ms)
    window_end_ms: int | None = json_field(name="window_end", encode=iso_ms)
    partial: bool
    events: int
    invalid: int
    late: int
    sampled: bool
    reservoir_size: int
    tested: bool
    skip_reason: str | None
    latency_ms: LatencySummary
    confidence: ConfidenceSummary
    predictions: Mapping[str, int]  # class -> count, sorted by class
    error_rate: float | None
    accuracy: float | None
    labelled: int
    drift: DriftVerdicts = NOT_TESTED
    drifted: bool = False
    window_seq: int | None = json_field(omit_none=True, default=None)
    # The accuracy estimate with its interval (docs/results.md, *The estimate*); only when one was made.
    accuracy_estimate: AccuracyEstimate | None = json_field(omit_none=True, default=None)
    # What a person needs to see what changed (docs/evidence.md): stored beside the result, in the same
    # transaction, never in its JSON (the result's JSON stays what consumers parse).
    evidence: WindowEvidence | None = json_field(skip=True, default=None)

    @property
    def inputs_shifted(self) -> bool:
        """Input or embedding drift was flagged: the calibration a label-free estimate relies on may not hold."""
        d = self.drift
        return bool((d.input is not None and d.input.drifted) or (d.embedding is not None and d.embedding.drifted))

    @property
    def seq(self) -> int:
        """``window_seq``, 0 for a time window: the last part of the window's key in the SQL store."""
        return self.window_seq or 0

    def to_dict(self) -> dict:
        """Return the result JSON (docs/results.md): only where it leaves the process."""
        return as_dict(self)


# -- A/B experiments and shadow joins (docs/experiments.md, *The result*) ------------------------------------------
_FIXED_HORIZON_NOTE = "valid only once both variants reach planned_n (valid_now); do not read it earlier"


def _fixed_horizon_json(fixed: FixedHorizonResult) -> dict:
    return {**fixed.to_dict(), "note": _FIXED_HORIZON_NOTE}


@dataclass(frozen=True, slots=True)
class VariantFigures:
    """Samples and the primary metric of one variant: cumulative since the experiment started, and this window."""

    variant: str = json_field(skip=True)  # the key of ``variants``
    intended_share: float
    samples: int
    window_samples: int
    metric_n: int
    metric_mean: float
    window_metric_n: int
    window_metric_mean: float

    def to_dict(self) -> dict:
        return as_dict(self)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One treatment against the control: always-valid test, fixed-horizon test, guardrails, verdict."""

    variant: str = json_field(skip=True)  # the key of ``comparisons``
    control: str
    always_valid: SequentialResult
    fixed_horizon: FixedHorizonResult | None = json_field(encode=_fixed_horizon_json)
    guardrails: tuple[GuardrailResult, ...]
    guardrail_breached: bool = field(init=False)  # any guardrail breached (derived)
    improved: bool
    degraded: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "guardrail_breached", any(g.breached for g in self.guardrails))

    def to_dict(self) -> dict:
        return as_dict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentResult:
    """An experiment after one closed window (a look); ``to_dict`` is the stored and exported document.

    ``samples`` and the verdicts (``srm_mismatch`` ... ``guardrail_breached``) are derived from the variants,
    the SRM test and the comparisons when the result is built; they are fields so that the document keeps its
    key order.
    """

    result_schema: int = RESULT_SCHEMA
    experiment: str
    model: str
    metric: str
    higher_is_better: bool
    window_kind: str
    window_start_ms: int = json_field(name="window_start", encode=iso_ms)
    window_end_ms: int = json_field(name="window_end", encode=iso_ms)
    window_seq: int
    partial: bool
    late: int
    samples: int = field(init=False)
    srm_mismatch: bool = field(init=False)
    significant: bool = field(init=False)
    degraded: bool = field(init=False)
    guardrail_breached: bool = field(init=False)
    planned_samples: int | None
    variants: tuple[VariantFigures, ...] = json_field(key_by="variant")
    srm: SRMResult
    comparisons: tuple[Comparison, ...] = json_field(key_by="variant")

    def __post_init__(self) -> None:
        derived = {
            "samples": sum(v.samples for v in self.variants) + self.srm.unexpected_n,
            "srm_mismatch": self.srm.mismatch,
            "significant": any(c.always_valid.significant for c in self.comparisons),
            "degraded": any(c.degraded for c in self.comparisons),
            "guardrail_breached": any(c.guardrail_breached for c in self.comparisons),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        return as_dict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowResult:
    """The served/shadow pairs of one served model and window, and the joiner's counters when it closed.

    A pair belongs to the window of its served event. ``late_pairs`` were joined after their window had
    closed (a partner later than ``ttl`` plus the window's lateness) and are in no window. ``joins`` are the
    joiner's cumulative counters (``monitor.ab.shadow.JOIN_OUTCOMES`` and ``pending``) over every model of
    the partition. The summary's figures are written at the top level of the document.
    """

    result_schema: int = 1
    model: str
    window_kind: str
    window_start_ms: int = json_field(name="window_start", encode=iso_ms)
    window_end_ms: int = json_field(name="window_end", encode=iso_ms)
    window_seq: int
    partial: bool
    late_pairs: int
    summary: ShadowSummary = json_field(flatten=True)
    joins: Mapping[str, int]

    def to_dict(self) -> dict:
        return as_dict(self)


# -- realised accuracy from late label events (docs/results.md, *Labels results*) ----------------------------------
@dataclass(frozen=True, slots=True)
class ClassFigures:
    """One class of a labels result: how often it was predicted and was the label among the labelled pairs."""

    label: str = json_field(skip=True)  # the key of ``classes``
    predicted: int
    labelled: int
    correct: int
    precision: float | None  # correct / predicted; None when never predicted
    recall: float | None  # correct / labelled; None when never the label

    def to_dict(self) -> dict:
        return as_dict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelsResult:
    """The realised accuracy of one prediction window, once its label period closed (docs/results.md).

    ``labelled`` predictions met their label within ``labels.max_delay_seconds``; ``unmatched`` =
    ``with_request_id - labelled`` = ``expired + evicted``. ``duplicates`` are further labels of a labelled
    prediction. ``estimated_accuracy`` is the label-free estimate made when the prediction window closed.
    """

    result_schema: int = RESULT_SCHEMA
    result_kind: str = "labels"
    model: str
    version: str
    window_start_ms: int = json_field(name="window_start", encode=iso_ms)
    window_end_ms: int = json_field(name="window_end", encode=iso_ms)
    partial: bool
    predictions: int
    with_request_id: int
    labelled: int
    accuracy: float | None
    classes: tuple[ClassFigures, ...] = json_field(key_by="label")
    duplicates: int
    unmatched: int
    expired: int
    evicted: int
    estimated_accuracy: float | None
    # Its interval and reliability (docs/results.md, *The estimate*); only when the estimate has them.
    estimated_accuracy_low: float | None = json_field(omit_none=True, default=None)
    estimated_accuracy_high: float | None = json_field(omit_none=True, default=None)
    estimate_reliable: bool | None = json_field(omit_none=True, default=None)

    def to_dict(self) -> dict:
        return as_dict(self)


@dataclass(frozen=True, slots=True)
class BatchResults:
    """What one :meth:`monitor.pipeline.Pipeline.process` (or ``flush``) call closed, in closing order."""

    windows: tuple[WindowResult, ...] = ()
    experiments: tuple[ExperimentResult, ...] = ()
    shadow: tuple[ShadowResult, ...] = ()
    labels: tuple[LabelsResult, ...] = ()


class Sink(Protocol):
    """Every call the pipeline makes on its sink (sinks.prometheus.PrometheusSink implements them all)."""

    def observe_batch(self, model: str, version: str, *, classes: Counter, errors: int, latency_ms: np.ndarray,
                      confidence: np.ndarray, lengths: np.ndarray, last_ts_ms: int, segment: str = "") -> None: ...
    def window_closed(self, result: WindowResult) -> None: ...
    def experiment_closed(self, result: ExperimentResult) -> None: ...
    def shadow_closed(self, result: ShadowResult) -> None: ...
    def count_records(self, consumed: int, valid: int) -> None: ...
    def count_invalid(self, reason: str, n: int = 1) -> None: ...
    def count_late(self, model: str, version: str, n: int, *, segment: str = "") -> None: ...
    def count_untracked(self, n: int) -> None: ...
    def count_segment_folded(self, n: int) -> None: ...
    def forget_stream(self, model: str, version: str, *, segment: str = "") -> None: ...
    def set_open_windows(self, n: int) -> None: ...
    def count_shadow_joins(self, deltas: Mapping[str, int]) -> None: ...
    def set_shadow_pending(self, n: int) -> None: ...
    def labels_closed(self, result: LabelsResult) -> None: ...
    def count_label_joins(self, deltas: Mapping[str, int]) -> None: ...
    def set_label_pending(self, n: int) -> None: ...


class DeadLetter(Protocol):
    def write(self, raw: bytes, reason: str, detail: str, position: str) -> None: ...


@dataclass
class PipelineStats:
    lines: int = 0
    valid: int = 0
    invalid: Counter = field(default_factory=Counter)
    late: int = 0
    windows: int = 0
    # Failures caught in the stateful phase (a detector, a sink, a hook), by stage; never the message.
    internal_errors: Counter = field(default_factory=Counter)
    untracked: int = 0  # events of streams over metrics.max_tracked_streams (windowed as __other__)
    segment_folded: int = 0  # events of a model's segments over window.max_segments (segment __other__)
    labels: int = 0  # valid label events (kind "label"): not predictions, so not in ``valid``

    def to_dict(self) -> dict:
        return {
            "lines": self.lines,
            "valid": self.valid,
            "invalid": sum(self.invalid.values()),
            "invalid_by_reason": dict(sorted(self.invalid.items())),
            "late": self.late,
            "windows": self.windows,
            # Only when they happened: the summary's shape stays what scripts parse.
            **({"internal_errors": dict(sorted(self.internal_errors.items()))} if self.internal_errors else {}),
            **({"untracked": self.untracked} if self.untracked else {}),
            **({"segment_folded": self.segment_folded} if self.segment_folded else {}),
            **({"labels": self.labels} if self.labels else {}),
        }
