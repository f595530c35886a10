"""Build a reference profile from a JSONL file of prediction-log events (``nlpmon reference build``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from detectors.embedding import fit_reference
from monitor.ingest.batch import EMBEDDING_LENGTH_REASON
from monitor.ingest.events import InvalidEvent, LabelEvent, decode_event
from monitor.ingest.features import base_features, event_rows, probability_columns
from monitor.ingest.reference import (
    FEATURES_VERSION,
    FeatureSet,
    Profile,
    ProfileError,
    encode_rows,
    file_sha256,
    utc_now_iso,
)  # fmt: skip
from monitor.ingest.tokenizer import TokenizerFeaturizer
from monitor.runtime.sources import iter_batches, open_source
from monitor.windowing.accumulator import window_seed
from monitor.windowing.reservoir import Reservoir

__all__ = ["build_profile", "MAX_CUSTOM_FEATURES"]

# Custom feature names and probability classes come from producers; cap them so a buggy producer cannot
# blow up a profile (the first ones seen are kept).
MAX_CUSTOM_FEATURES = 64
MAX_PROBABILITY_CLASSES = 64
# Embedding drift (docs/results.md): the projection is fitted on half of a seeded sample of the reference
# events' embeddings and the other half, projected, is the stored reference sample (detectors.embedding).
EMBEDDING_COMPONENTS = 16
EMBEDDING_REFERENCE = 2000


class _ModelSample:
    def __init__(self, model: str, width: int, cap: int, seed: int):
        self.model = model
        self.rows = Reservoir(cap, width, window_seed(seed, model, "", 0))
        self.custom: dict[str, Reservoir] = {}
        self.probabilities: dict[str, Reservoir] = {}  # one sample per class (BBSD)
        self.embeddings: Reservoir | None = None  # raw embeddings, width fixed by the first one
        self.classes: Counter[str] = Counter()
        self.versions: set[str] = set()
        self.events = 0


def build_profile(
    path: str,
    *,
    model: str | None = None,
    versions: tuple[str, ...] = (),
    tokenizer: TokenizerFeaturizer | None = None,
    sample_cap: int = 50_000,
    seed: int = 0,
    max_text_chars: int = 10_000,
    batch_size: int = 2000,
) -> tuple[Profile, dict]:
    """Return the profile of ``model`` (or of the only model in the file) and a summary of what was read."""
    features = FeatureSet(tokenizer=tokenizer.info.to_dict() if tokenizer else None)
    width = 2 + len(features.base_names)
    per_model: dict[str, _ModelSample] = {}
    invalid: Counter[str] = Counter()
    lines = 0
    stream, name = open_source(path)
    try:
        for batch in iter_batches(stream, name, batch_size):
            lines += len(batch)
            events = []
            for rec in batch:
                try:
                    e = decode_event(rec.value, max_text_chars=max_text_chars)
                except InvalidEvent as exc:
                    invalid[exc.reason] += 1
                    continue
                if type(e) is LabelEvent:  # the true class of a logged prediction: not part of a profile
                    continue
                if (model is None or e.model == model) and (not versions or e.version in versions):
                    events.append(e)
            if not events:
                continue
            base = base_features(events, features, tokenizer).matrix
            rows = event_rows(events, base, ())
            by_model: dict[str, list[int]] = {}
            for i, e in enumerate(events):
                by_model.setdefault(e.model, []).append(i)
            for m, idx in by_model.items():
                s = per_model.get(m)
                if s is None:
                    s = per_model[m] = _ModelSample(m, width, sample_cap, seed)
                s.rows.add(rows[idx])
                s.events += len(idx)
                _add_probabilities(s, [events[i] for i in idx], seed)
                for reason in _add_embeddings(s, [events[i] for i in idx], seed):
                    invalid[reason] += 1
                for i in idx:
                    e = events[i]
                    s.versions.add(e.version)
                    if e.error is None and e.prediction is not None:
                        s.classes[e.prediction] += 1
                    if e.features:
                        for fname, value in e.features.items():
                            res = s.custom.get(fname)
                            if res is None:
                                if len(s.custom) >= MAX_CUSTOM_FEATURES:
                                    continue
                                res = s.custom[fname] = Reservoir(sample_cap, 1, window_seed(seed, m, fname, 1))
                            res.add(np.array([[value]]))
    finally:
        if name != "stdin":
            stream.close()

    if not per_model:
        what = f"for model {model!r}" if model else ""
        raise ProfileError(f"{path}: no valid events {what}(read {lines} lines, {sum(invalid.values())} invalid)".replace("  ", " "))
    if len(per_model) > 1:
        names = ", ".join(sorted(per_model))
        raise ProfileError(f"{path} holds events of several models ({names}); choose one with --model")
    s = next(iter(per_model.values()))
    kept = s.rows.rows
    custom = tuple(sorted(s.custom))
    samples = {n: _finite(kept[:, 2 + j]) for j, n in enumerate(features.base_names)}
    samples.update({n: _finite(s.custom[n].rows[:, 0]) for n in custom})
    profile = Profile(
        model=s.model,
        versions=tuple(sorted(s.versions)),
        source=str(Path(path).resolve()) if path != "-" else "stdin",
        source_sha256=file_sha256(path) if path != "-" else "",
        created_at=utc_now_iso(),
        events=s.events,
        features_version=FEATURES_VERSION,
        feature_names=features.base_names + custom,
        custom_features=custom,
        tokenizer=features.tokenizer,
        samples=samples,
        confidence=_finite(kept[:, 1]),
        latency_ms=_finite(kept[:, 0]),
        class_counts=dict(s.classes),
        sample_cap=sample_cap,
        sampled=s.rows.sampled,
        probabilities={c: _finite(s.probabilities[c].rows[:, 0]) for c in sorted(s.probabilities)},
        embedding=_fit_embedding(s, seed),
    )
    summary = {"lines": lines, "events": s.events, "invalid": dict(invalid), "model": s.model, "versions": list(profile.versions),
               "features": list(profile.feature_names), "probability_classes": list(profile.probability_classes),
               "embedding_components": profile.embedding_components,
               "sampled": profile.sampled}
    return profile, summary


def _finite(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[np.isfinite(a)])


def _add_probabilities(s: _ModelSample, events: list, seed: int) -> None:
    """Add the batch's class probabilities to each class's sample (batch-independent: one column per class)."""
    for e in events:
        if e.probabilities is not None and e.error is None:
            for c in e.classes:
                if c not in s.probabilities and len(s.probabilities) < MAX_PROBABILITY_CLASSES:
                    s.probabilities[c] = Reservoir(s.rows.capacity, 1, window_seed(seed, s.model, c, 2))
    if not s.probabilities:
        return
    classes = tuple(s.probabilities)
    matrix = probability_columns(events, classes)
    for j, c in enumerate(classes):
        column = matrix[:, j]
        s.probabilities[c].add(column[np.isfinite(column)][:, None])


def _add_embeddings(s: _ModelSample, events: list, seed: int) -> list[str]:
    """Add the events' embeddings to the model's sample; return a rejection reason per wrong-length one."""
    with_embedding = [e.embedding for e in events if e.embedding is not None]
    if not with_embedding:
        return []
    if s.embeddings is None:
        s.embeddings = Reservoir(2 * EMBEDDING_REFERENCE, len(with_embedding[0]), window_seed(seed, s.model, "", 3))
    dim = s.embeddings.width
    kept = [v for v in with_embedding if len(v) == dim]
    if kept:
        s.embeddings.add(np.array(kept, dtype=np.float64))
    return [EMBEDDING_LENGTH_REASON] * (len(with_embedding) - len(kept))


def _fit_embedding(s: _ModelSample, seed: int) -> dict | None:
    if s.embeddings is None or s.embeddings.rows.shape[0] < 4:
        return None
    projection, reference = fit_reference(s.embeddings.rows, components=EMBEDDING_COMPONENTS,
                                          max_reference=EMBEDDING_REFERENCE, seed=seed)
    return {"source": "event", "dim": projection.dim, "projection": projection.to_dict(),
            "reference": encode_rows(reference), "seed": seed}
