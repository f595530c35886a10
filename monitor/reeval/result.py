"""The result of one re-evaluation job: every figure, typed and frozen; ``to_dict()`` is its JSON.

``run_reeval`` returns a :class:`ReevalResult`; the CLI prints it (a table, or ``to_dict()`` as JSON), the
worker process writes ``to_dict()`` for the daemon, which reads it back as a
:class:`monitor.results.ReevalReport` (docs/reeval.md, *JSON*).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detectors.classification import CalibrationTable, ClassificationReport, ModelComparison

__all__ = ["ReevalResult", "Timings", "BaselineComparison", "BatchConsistency", "CandidateResult", "REEVAL_SCHEMA"]

REEVAL_SCHEMA = 1


@dataclass(frozen=True)
class Timings:
    """Wall-clock seconds per phase; ``eval_seconds`` (tokenize + inference) is what sentences/s is over."""

    load_seconds: float
    tokenize_seconds: float
    inference_seconds: float
    metrics_seconds: float

    @property
    def eval_seconds(self) -> float:
        return self.tokenize_seconds + self.inference_seconds

    def to_dict(self) -> dict:
        return {
            "load_seconds": self.load_seconds,
            "tokenize_seconds": self.tokenize_seconds,
            "inference_seconds": self.inference_seconds,
            "metrics_seconds": self.metrics_seconds,
        }


@dataclass(frozen=True)
class BaselineComparison:
    """The run against its baseline; drops are baseline minus current, so positive means worse."""

    source: str
    run: str | None
    accuracy: float
    accuracy_drop: float
    macro_f1: float | None
    macro_f1_drop: float | None

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "run": self.run,
            "accuracy": self.accuracy,
            "accuracy_drop": self.accuracy_drop,
            "macro_f1": self.macro_f1,
            "macro_f1_drop": self.macro_f1_drop,
        }


@dataclass(frozen=True)
class BatchConsistency:
    """Candidate predictions at batch size 1 against the configured batch size, on ``n`` sentences."""

    batch_size: int
    n: int
    flips: int
    flip_rate: float
    max_probability_change: float

    def to_dict(self) -> dict:
        return {
            "batch_size": self.batch_size,
            "n": self.n,
            "flips": self.flips,
            "flip_rate": self.flip_rate,
            "max_probability_change": self.max_probability_change,
        }


@dataclass(frozen=True)
class CandidateResult:
    """A second model (e.g. the INT8 export) on the same data, and how far it is from the served one."""

    model_path: str
    model_sha256: str
    provider: str
    metrics: ClassificationReport
    ece: float
    mean_confidence: float
    comparison: ModelComparison
    max_change_text: str
    batch_consistency: BatchConsistency | None
    inference_seconds: float
    sentences_per_second: float
    # Agreement with the model on logged traffic (options.traffic_texts); None without traffic texts.
    traffic: ModelComparison | None = None

    def to_dict(self, labels: tuple[str, ...], primary: ClassificationReport) -> dict:
        m = self.metrics.to_dict(labels)
        return {
            "model": {"path": self.model_path, "sha256": self.model_sha256},
            "provider": self.provider,
            "accuracy": m["accuracy"],
            "accuracy_delta": self.metrics.accuracy - primary.accuracy,
            "macro_f1": m["macro_f1"],
            "ece": self.ece,
            "mean_confidence": self.mean_confidence,
            "per_class": m["per_class"],
            "confusion_matrix": m["confusion_matrix"],
            **{k: v for k, v in self.comparison.to_dict().items() if k != "n"},
            "max_change_text": self.max_change_text,
            "batch_consistency": self.batch_consistency.to_dict() if self.batch_consistency else None,
            "inference_seconds": self.inference_seconds,
            "sentences_per_second": self.sentences_per_second,
            # No text here: max_change_index points into traffic nobody can look up, so it is left out.
            "traffic": None if self.traffic is None else {
                k: v for k, v in self.traffic.to_dict().items() if k != "max_change_index"
            },
        }


@dataclass(frozen=True)
class ReevalResult:
    """Every figure of one re-evaluation; ``to_dict()`` is the ``--format json`` object (docs/reeval.md)."""

    started_at: str
    model_name: str
    model_version: str | None
    dataset: str
    model_path: str
    model_sha256: str
    tokenizer_path: str
    data_path: str
    provider: str
    provider_requested: str
    providers_available: tuple[str, ...]
    provider_note: str | None
    batch_size: int
    max_length: int
    sorted_batches: bool
    labels: tuple[str, ...]
    label_source: str
    metrics: ClassificationReport
    ece: float
    mean_confidence: float
    calibration: CalibrationTable
    truncated: int
    duration_seconds: float
    sentences_per_second: float
    timings: Timings
    baseline: BaselineComparison | None = None
    candidate: CandidateResult | None = None
    schema: int = field(default=REEVAL_SCHEMA)

    @property
    def n(self) -> int:
        return self.metrics.n

    @property
    def accuracy(self) -> float:
        return self.metrics.accuracy

    @property
    def macro_f1(self) -> float:
        return self.metrics.macro_f1

    @property
    def accuracy_drop(self) -> float | None:
        return self.baseline.accuracy_drop if self.baseline else None

    def to_dict(self) -> dict:
        m = self.metrics.to_dict(self.labels)
        return {
            "reeval_schema": self.schema,
            "started_at": self.started_at,
            "model": {
                "name": self.model_name,
                "version": self.model_version,
                "path": self.model_path,
                "sha256": self.model_sha256,
            },
            "tokenizer": self.tokenizer_path,
            "dataset": {"name": self.dataset, "path": self.data_path},
            "provider": self.provider,
            "provider_requested": self.provider_requested,
            "providers_available": list(self.providers_available),
            "provider_note": self.provider_note,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "sorted_batches": self.sorted_batches,
            "labels": list(self.labels),
            "label_source": self.label_source,
            "n": self.n,
            "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"],
            "ece": self.ece,
            "mean_confidence": self.mean_confidence,
            "per_class": m["per_class"],
            "confusion_matrix": m["confusion_matrix"],
            "truncated": self.truncated,
            "sentences_per_second": self.sentences_per_second,
            "duration_seconds": self.duration_seconds,
            "timings": self.timings.to_dict(),
            "accuracy_drop": self.accuracy_drop,
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "calibration": self.calibration.to_dict(),
            "candidate": self.candidate.to_dict(self.labels, self.metrics) if self.candidate else None,
        }
