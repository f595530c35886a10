"""The re-evaluation job: replay a labelled held-out set through the served ONNX model and score it.

``run_reeval(options) -> ReevalResult`` is the whole job. Options and result are frozen, picklable
dataclasses, so the daemon can run the job in a subprocess and store ``result.to_dict()`` (docs/reeval.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from detectors.classification import (
    DEFAULT_CALIBRATION_BINS,
    CalibrationTable,
    ClassificationReport,
    ModelComparison,
    classification_report,
    compare_probabilities,
    fit_confidence_calibration,
)
from monitor.ingest.reference import file_sha256
from monitor.onnx.encode import Encoded, encode_texts, load_tokenizer, plan_batches, resolve_max_length
from monitor.onnx.session import PROVIDERS
from monitor.reeval.data import load_labelled_data
from monitor.reeval.errors import ModelError
from monitor.reeval.session import OnnxClassifier

__all__ = [
    "ReevalOptions",
    "Baseline",
    "BaselineComparison",
    "BatchConsistency",
    "CandidateResult",
    "ReevalResult",
    "Timings",
    "run_reeval",
    "score_texts",
    "REEVAL_SCHEMA",
]

REEVAL_SCHEMA = 1
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Baseline:
    """What the current run is compared against: a configured accuracy or a stored earlier run.

    ``source`` says which (``"configured"``, ``"first_run"``, ...); ``run`` can carry an identifier of the
    stored run (a SQL row id, a timestamp) so that the comparison names what it compared to.
    """

    accuracy: float
    macro_f1: float | None = None
    source: str = "configured"
    run: str | None = None

    def __post_init__(self):
        for name in ("accuracy", "macro_f1"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"baseline {name} must be a number in [0, 1], got {value!r}")

    @classmethod
    def from_result(cls, result: ReevalResult | dict, *, source: str = "first_run", run: str | None = None) -> Baseline:
        """Use an earlier run (a ``ReevalResult`` or its stored ``to_dict()``) as the baseline."""
        d = result.to_dict() if isinstance(result, ReevalResult) else result
        try:
            return cls(
                accuracy=float(d["accuracy"]), macro_f1=d.get("macro_f1"), source=source, run=run or d.get("started_at")
            )
        except (KeyError, TypeError):
            raise ValueError(
                "a stored re-evaluation result must hold an 'accuracy' figure to serve as a baseline"
            ) from None


@dataclass(frozen=True)
class ReevalOptions:
    """Everything one re-evaluation needs; validated on construction, no I/O.

    ``label_map`` is the parsed ``--label-map`` (name -> class index); without it the labels come from
    ``config.json`` id2label next to the model or in the tokenizer directory, or must be class indices.
    ``max_length=None`` uses the tokenizer's ``model_max_length`` (512 when it has none).
    ``flip_check_limit`` caps how many sentences the candidate re-runs one at a time (a seeded sample).
    ``model_name``, ``model_version`` and ``dataset_name`` label the result (default: file stems).
    ``traffic_texts`` are logged texts of recent real traffic (unlabelled); with a ``candidate`` both models
    score them too and the result reports their agreement there (``candidate.traffic``). The texts themselves
    never appear in the result.
    """

    model: Path
    tokenizer: Path
    data: Path
    text_field: str = "text"
    label_field: str = "label"
    label_map: tuple[tuple[str, int], ...] | None = None
    batch_size: int = 32
    max_length: int | None = None
    provider: str = "auto"
    candidate: Path | None = None
    baseline: Baseline | None = None
    calibration_bins: int = DEFAULT_CALIBRATION_BINS
    sort_by_length: bool = True
    intra_op_threads: int = 0
    flip_check_limit: int | None = 2000
    seed: int = 0
    model_name: str | None = None
    model_version: str | None = None
    dataset_name: str | None = None
    traffic_texts: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("model", "tokenizer", "data", "candidate"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if not isinstance(self.traffic_texts, tuple):
            object.__setattr__(self, "traffic_texts", tuple(self.traffic_texts))
        if not all(isinstance(t, str) for t in self.traffic_texts):
            raise ValueError("traffic_texts must be strings")
        if isinstance(self.label_map, dict):
            object.__setattr__(self, "label_map", tuple(self.label_map.items()))
        if not self.text_field or not self.label_field:
            raise ValueError("text_field and label_field must be non-empty")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be at least 2 (room for the special tokens), got {self.max_length}")
        if self.provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, got {self.provider!r}")
        if self.calibration_bins < 1:
            raise ValueError(f"calibration_bins must be at least 1, got {self.calibration_bins}")
        if self.intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be 0 (onnxruntime's default) or more, got {self.intra_op_threads}")
        if self.flip_check_limit is not None and self.flip_check_limit < 0:
            raise ValueError(f"flip_check_limit must be non-negative, got {self.flip_check_limit}")


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


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else math.inf


def _phase(progress: Progress | None, phase: str) -> Callable[[int, int], None] | None:
    return None if progress is None else (lambda done, total: progress(done, total, phase))


def _feeder(encoded: Encoded, model: OnnxClassifier) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    return lambda idx: encoded.batch(idx, dtype=model.input_dtype)


def _batch_consistency(
    model: OnnxClassifier, encoded: Encoded, probs: np.ndarray, options: ReevalOptions, progress: Progress | None
) -> BatchConsistency | None:
    n = len(encoded)
    if options.batch_size == 1:
        return None  # the served batch size already is 1: nothing to compare
    limit = n if options.flip_check_limit is None else min(n, options.flip_check_limit)
    if limit == 0:
        return None
    rng = np.random.default_rng(options.seed)
    sample = np.sort(rng.choice(n, size=limit, replace=False)) if limit < n else np.arange(n)
    single = model.predict_proba(
        [sample[i : i + 1] for i in range(limit)], _feeder(encoded, model), n, _phase(progress, "candidate, batch 1")
    )
    one, batched = single[sample], probs[sample]
    flips = int(np.sum(one.argmax(axis=1) != batched.argmax(axis=1)))
    return BatchConsistency(
        batch_size=options.batch_size,
        n=int(limit),
        flips=flips,
        flip_rate=flips / limit,
        max_probability_change=float(np.max(np.abs(one - batched))),
    )


def score_texts(
    model: OnnxClassifier,
    tokenizer,
    texts: list[str] | tuple[str, ...],
    *,
    batch_size: int = 32,
    max_length: int = 512,
    sort_by_length: bool = True,
) -> np.ndarray:
    """Class probabilities ``(len(texts), num_labels)`` in the order of ``texts``, batched as ``run_reeval`` does.

    For scoring unlabelled texts (e.g. logged traffic through a candidate) with a loaded model and tokenizer.
    """
    encoded = encode_texts(tokenizer, texts, max_length=max_length, with_type_ids=model.wants_token_type_ids)
    batches = plan_batches(encoded.lengths, batch_size, sort=sort_by_length)
    return model.predict_proba(batches, _feeder(encoded, model), len(encoded))


def run_reeval(options: ReevalOptions, *, progress: Progress | None = None) -> ReevalResult:
    """Run one re-evaluation; raises ``ReevalError`` (``DataError``, ``ModelError``, ``ProviderError``) on bad input.

    ``progress(done, total, phase)`` is called as batches finish; the CLI draws a bar with it.
    """
    started_at = _now_iso()
    t_start = time.perf_counter()

    model = OnnxClassifier(options.model, provider=options.provider, intra_op_threads=options.intra_op_threads)
    candidate = (
        OnnxClassifier(options.candidate, provider=options.provider, intra_op_threads=options.intra_op_threads)
        if options.candidate is not None
        else None
    )
    tokenizer = load_tokenizer(options.tokenizer)
    max_length = resolve_max_length(tokenizer, options.max_length)
    with_type_ids = model.wants_token_type_ids or (candidate is not None and candidate.wants_token_type_ids)

    # The class count is needed to resolve labels; a graph that leaves it symbolic is probed on one text.
    if model.num_labels is None:
        probe = encode_texts(tokenizer, ["a"], max_length=max_length, with_type_ids=with_type_ids)
        model.probe_num_labels(probe.batch(np.arange(1), dtype=model.input_dtype))
    num_labels = model.num_labels
    data = load_labelled_data(
        options.data,
        num_labels=num_labels,
        text_field=options.text_field,
        label_field=options.label_field,
        label_map=dict(options.label_map) if options.label_map is not None else None,
        config_dirs=(options.model.parent, options.tokenizer),
    )
    load_seconds = time.perf_counter() - t_start
    n = len(data)

    t0 = time.perf_counter()
    encoded = encode_texts(
        tokenizer, data.texts, max_length=max_length, with_type_ids=with_type_ids, progress=_phase(progress, "tokenize")
    )
    batches = plan_batches(encoded.lengths, options.batch_size, sort=options.sort_by_length)
    t1 = time.perf_counter()
    probs = model.predict_proba(batches, _feeder(encoded, model), n, _phase(progress, "model"))
    t2 = time.perf_counter()
    if probs.shape[1] != num_labels:
        raise ModelError(
            f"model {options.model.name} returned {probs.shape[1]} classes, its graph declares {num_labels}"
        )

    pred = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    metrics = classification_report(data.labels, pred, num_labels)
    calibration = fit_confidence_calibration(confidence, pred == data.labels, options.calibration_bins)

    baseline = None
    if options.baseline is not None:
        b = options.baseline
        baseline = BaselineComparison(
            source=b.source,
            run=b.run,
            accuracy=b.accuracy,
            accuracy_drop=b.accuracy - metrics.accuracy,
            macro_f1=b.macro_f1,
            macro_f1_drop=None if b.macro_f1 is None else b.macro_f1 - metrics.macro_f1,
        )
    t3 = time.perf_counter()

    candidate_result = None
    if candidate is not None:
        candidate_result = _evaluate_candidate(candidate, options, encoded, batches, data, probs, t1 - t0, progress)
        if options.traffic_texts:
            candidate_result = replace(candidate_result, traffic=_traffic_agreement(model, candidate, tokenizer,
                                                                                    options, max_length))

    tokenize_seconds, inference_seconds = t1 - t0, t2 - t1
    return ReevalResult(
        started_at=started_at,
        model_name=options.model_name or options.model.stem,
        model_version=options.model_version,
        dataset=options.dataset_name or options.data.stem,
        model_path=str(options.model),
        model_sha256=file_sha256(options.model),
        tokenizer_path=str(options.tokenizer),
        data_path=str(options.data),
        provider=model.provider,
        provider_requested=options.provider,
        providers_available=model.providers_available,
        provider_note=model.note,
        batch_size=options.batch_size,
        max_length=max_length,
        sorted_batches=options.sort_by_length,
        labels=data.space.names,
        label_source=data.space.source,
        metrics=metrics,
        ece=calibration.ece,
        mean_confidence=float(confidence.mean()),
        calibration=calibration,
        truncated=int(encoded.truncated.sum()),
        duration_seconds=time.perf_counter() - t_start,
        sentences_per_second=_rate(n, tokenize_seconds + inference_seconds),
        timings=Timings(
            load_seconds=load_seconds,
            tokenize_seconds=tokenize_seconds,
            inference_seconds=inference_seconds,
            metrics_seconds=t3 - t2,
        ),
        baseline=baseline,
        candidate=candidate_result,
    )


def _evaluate_candidate(
    candidate: OnnxClassifier,
    options: ReevalOptions,
    encoded: Encoded,
    batches: list[np.ndarray],
    data,
    probs: np.ndarray,
    tokenize_seconds: float,
    progress: Progress | None,
) -> CandidateResult:
    n = len(encoded)
    t0 = time.perf_counter()
    cprobs = candidate.predict_proba(batches, _feeder(encoded, candidate), n, _phase(progress, "candidate"))
    seconds = time.perf_counter() - t0
    if cprobs.shape[1] != probs.shape[1]:
        raise ModelError(
            f"candidate {options.candidate.name} has {cprobs.shape[1]} classes but the model has {probs.shape[1]}; "
            "they cannot be compared"
        )
    cpred = cprobs.argmax(axis=1)
    cconf = cprobs.max(axis=1)
    comparison = compare_probabilities(probs, cprobs)
    return CandidateResult(
        model_path=str(options.candidate),
        model_sha256=file_sha256(options.candidate),
        provider=candidate.provider,
        metrics=classification_report(data.labels, cpred, probs.shape[1]),
        ece=fit_confidence_calibration(cconf, cpred == data.labels, options.calibration_bins).ece,
        mean_confidence=float(cconf.mean()),
        comparison=comparison,
        max_change_text=data.texts[comparison.max_change_index][:200],
        batch_consistency=_batch_consistency(candidate, encoded, cprobs, options, progress),
        inference_seconds=seconds,
        sentences_per_second=_rate(n, tokenize_seconds + seconds),
    )


def _traffic_agreement(model: OnnxClassifier, candidate: OnnxClassifier, tokenizer, options: ReevalOptions,
                       max_length: int) -> ModelComparison:
    """Both models on the logged traffic texts: how often they agree where it matters, on real inputs."""
    texts = options.traffic_texts
    kwargs = {"batch_size": options.batch_size, "max_length": max_length, "sort_by_length": options.sort_by_length}
    return compare_probabilities(score_texts(model, tokenizer, texts, **kwargs),
                                 score_texts(candidate, tokenizer, texts, **kwargs))
