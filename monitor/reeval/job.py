"""The re-evaluation job: replay a labelled held-out set through the served ONNX model and score it.

``run_reeval(options) -> ReevalResult`` is the whole job. Options and result are frozen, picklable
dataclasses, so the daemon can run the job in a subprocess and store ``result.to_dict()`` (docs/reeval.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from detectors.classification import (
    ClassificationReport,
    ModelComparison,
    classification_report,
    compare_probabilities,
    fit_confidence_calibration,
)
from monitor.config.reeval import Baseline, ReevalOptions
from monitor.ingest.reference import file_sha256
from monitor.reeval.data import LabelledData, load_labelled_data
from monitor.onnx.encode import Encoded, encode_texts, load_tokenizer, plan_batches, resolve_max_length
from monitor.reeval.errors import ModelError
from monitor.reeval.result import (
    REEVAL_SCHEMA,
    BaselineComparison,
    BatchConsistency,
    CandidateResult,
    ReevalResult,
    Timings,
)
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

Progress = Callable[[int, int, str], None]



def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else math.inf


def _phase(progress: Progress | None, phase: str) -> Callable[[int, int], None] | None:
    return None if progress is None else (lambda done, total: progress(done, total, phase))


def _feeder(encoded: Encoded, model: OnnxClassifier) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    return lambda idx: encoded.batch(idx, dtype=model.input_dtype)


def _batch_consistency(
    model: OnnxClassifier, encoded: Encoded, probs: np.ndarray, *, options: ReevalOptions, progress: Progress | None
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
    max_length: int | None = None,
    sort_by_length: bool = True,
) -> np.ndarray:
    """Class probabilities ``(len(texts), num_labels)`` in the order of ``texts``, batched as ``run_reeval`` does.

    For scoring unlabelled texts (e.g. logged traffic through a candidate) with a loaded model and tokenizer.
    """
    encoded = encode_texts(tokenizer, texts, max_length=resolve_max_length(tokenizer, max_length),
                           with_type_ids=model.wants_token_type_ids)
    batches = plan_batches(encoded.lengths, batch_size, sort=sort_by_length)
    return model.predict_proba(batches, _feeder(encoded, model), len(encoded))


@dataclass(frozen=True)
class _Loaded:
    """What the job loads before it scores anything: the models, the tokenizer and the labelled data."""

    model: OnnxClassifier
    candidate: OnnxClassifier | None
    tokenizer: object
    max_length: int
    with_type_ids: bool
    data: LabelledData


def _in_role(role: str, load, *args, **kwargs):
    """``load(*args, **kwargs)``; a :class:`ModelError` says which of the job's files failed (``role``)."""
    try:
        return load(*args, **kwargs)
    except ModelError as exc:
        raise ModelError(f"{role}: {exc}") from None


def _load(options: ReevalOptions) -> _Loaded:
    threads = options.threads
    model = _in_role("the served model (--model)", OnnxClassifier, options.model, provider=options.provider,
                     intra_op_threads=threads)
    candidate = (
        _in_role("the candidate model (--candidate)", OnnxClassifier, options.candidate, provider=options.provider,
                 intra_op_threads=threads)
        if options.candidate is not None
        else None
    )
    tokenizer = _in_role("the tokenizer (--tokenizer)", load_tokenizer, options.tokenizer)
    max_length = resolve_max_length(tokenizer, options.max_length)
    with_type_ids = model.wants_token_type_ids or (candidate is not None and candidate.wants_token_type_ids)

    # The class count is needed to resolve labels; a graph that leaves it symbolic is probed on one text.
    if model.num_labels is None:
        probe = encode_texts(tokenizer, ["a"], max_length=max_length, with_type_ids=with_type_ids)
        model.probe_num_labels(probe.batch(np.arange(1), dtype=model.input_dtype))
    data = load_labelled_data(
        options.data,
        num_labels=model.num_labels,
        text_field=options.text_field,
        label_field=options.label_field,
        label_map=dict(options.label_map) if options.label_map is not None else None,
        config_dirs=(options.model.parent, options.tokenizer),
    )
    return _Loaded(model, candidate, tokenizer, max_length, with_type_ids, data)


def _against(baseline: Baseline | None, metrics: ClassificationReport) -> BaselineComparison | None:
    if baseline is None:
        return None
    return BaselineComparison(
        source=baseline.source,
        run=baseline.run,
        accuracy=baseline.accuracy,
        accuracy_drop=baseline.accuracy - metrics.accuracy,
        macro_f1=baseline.macro_f1,
        macro_f1_drop=None if baseline.macro_f1 is None else baseline.macro_f1 - metrics.macro_f1,
    )


def run_reeval(options: ReevalOptions, *, progress: Progress | None = None) -> ReevalResult:
    """Run one re-evaluation; raises ``ReevalError`` (``DataError``, ``ModelError``, ``ProviderError``) on bad input.

    ``progress(done, total, phase)`` is called as batches finish; the CLI draws a bar with it.
    """
    started_at = _now_iso()
    t_start = time.perf_counter()
    loaded = _load(options)
    model, data, num_labels = loaded.model, loaded.data, loaded.model.num_labels
    load_seconds = time.perf_counter() - t_start
    n = len(data)

    t0 = time.perf_counter()
    encoded = encode_texts(loaded.tokenizer, data.texts, max_length=loaded.max_length,
                           with_type_ids=loaded.with_type_ids, progress=_phase(progress, "tokenize"))  # fmt: skip
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
    baseline = _against(options.baseline, metrics)
    t3 = time.perf_counter()

    candidate_result = None
    if loaded.candidate is not None:
        candidate_result = _evaluate_candidate(loaded.candidate, options, encoded=encoded, batches=batches, data=data,
                                               probs=probs, tokenize_seconds=t1 - t0, progress=progress)
        if options.traffic_texts:
            candidate_result = replace(candidate_result, traffic=_traffic_agreement(loaded, options))

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
        max_length=loaded.max_length,
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
    *,
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
        batch_consistency=_batch_consistency(candidate, encoded, cprobs, options=options, progress=progress),
        inference_seconds=seconds,
        sentences_per_second=_rate(n, tokenize_seconds + seconds),
    )


def _traffic_agreement(loaded: _Loaded, options: ReevalOptions) -> ModelComparison:
    """Both models on the logged traffic texts: how often they agree where it matters, on real inputs."""
    texts = options.traffic_texts
    kwargs = {"batch_size": options.batch_size, "max_length": loaded.max_length, "sort_by_length": options.sort_by_length}
    return compare_probabilities(score_texts(loaded.model, loaded.tokenizer, texts, **kwargs),
                                 score_texts(loaded.candidate, loaded.tokenizer, texts, **kwargs))
