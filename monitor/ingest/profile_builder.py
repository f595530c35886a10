"""Build a reference profile from a JSONL file of prediction-log events (``nlpmon reference build``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from detectors.embedding import fit_reference
from monitor.config import EmbeddingConfig
from monitor.ingest.batch import EMBEDDING_LENGTH_REASON
from monitor.ingest.events import InvalidEvent, LabelEvent, decode_event
from monitor.ingest.features import base_features, event_rows, probability_columns
from monitor.ingest.oov import OOV_FEATURE, VocabularyBuilder
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
# Embedding drift (docs/results.md): the projection (embedding.components, embedding.whiten) is fitted on
# half of a seeded sample of 2 * embedding.reference_size reference embeddings, the events' own or, with an
# encoder, the encoder's of a seeded sample of the reference texts; the other half, projected, is the stored
# reference sample (detectors.embedding).


class _ModelSample:
    def __init__(self, model: str, width: int, cap: int, seed: int):
        self.model = model
        self.rows = Reservoir(cap, width, window_seed(seed, model, "", 0))
        self.custom: dict[str, Reservoir] = {}
        self.probabilities: dict[str, Reservoir] = {}  # one sample per class (BBSD)
        self.embeddings: Reservoir | None = None  # raw embeddings, width fixed by the first one
        self.vocabulary = VocabularyBuilder(cap, seed)  # oov_rate: word counts and held-out texts
        self.texts: list[str] = []  # with an encoder: the sampled texts, by slot of text_slots
        self.text_slots: Reservoir | None = None
        self.classes: Counter[str] = Counter()
        self.versions: set[str] = set()
        self.segments: Counter[str] = Counter()  # events by segment (reference build --by-segment)
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
    segment: str | None = None,
    embedding: EmbeddingConfig = EmbeddingConfig(),
    encoder=None,
) -> tuple[Profile, dict]:
    """Return the profile of ``model`` (or of the only model in the file) and a summary of what was read;
    with ``segment``, of that segment's events only (a segment profile, docs/results.md *Segments*).

    ``embedding`` holds the projection settings; ``encoder`` (a ``monitor.onnx.encoder.OnnxEncoder``, the
    daemon's ``[embedding] model``) embeds a seeded sample of the reference texts, and the events' own
    ``embedding`` fields are then ignored.
    """
    cap = 2 * embedding.reference_size
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
                if ((model is None or e.model == model) and (not versions or e.version in versions)
                        and (segment is None or e.segment == segment)):
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
                s.vocabulary.add([events[i].text for i in idx])
                if encoder is not None:
                    _add_texts(s, [events[i].text for i in idx], cap, seed)
                else:
                    for reason in _add_embeddings(s, [events[i] for i in idx], cap, seed):
                        invalid[reason] += 1
                for i in idx:
                    e = events[i]
                    s.versions.add(e.version)
                    if e.segment is not None:
                        s.segments[e.segment] += 1
                    if e.error is None and e.prediction is not None:
                        s.classes[e.prediction] += 1
                    if e.features:
                        for fname, value in e.features.items():
                            res = s.custom.get(fname)
                            if res is None:
                                # oov_rate is the builder's own feature: a producer's of that name is dropped.
                                if len(s.custom) >= MAX_CUSTOM_FEATURES or fname == OOV_FEATURE:
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
    vocabulary = s.vocabulary.finish()
    if vocabulary is not None:
        samples[OOV_FEATURE] = np.sort(vocabulary[1])
    profile = Profile(
        model=s.model,
        versions=tuple(sorted(s.versions)),
        source=str(Path(path).resolve()) if path != "-" else "stdin",
        source_sha256=file_sha256(path) if path != "-" else "",
        created_at=utc_now_iso(),
        events=s.events,
        features_version=FEATURES_VERSION,
        feature_names=features.base_names + custom + ((OOV_FEATURE,) if vocabulary else ()),
        custom_features=custom,
        tokenizer=features.tokenizer,
        samples=samples,
        confidence=_finite(kept[:, 1]),
        latency_ms=_finite(kept[:, 0]),
        class_counts=dict(s.classes),
        sample_cap=sample_cap,
        sampled=s.rows.sampled,
        probabilities={c: _finite(s.probabilities[c].rows[:, 0]) for c in sorted(s.probabilities)},
        embedding=_fit_embedding(s, seed, embedding, encoder),
        segment=segment,
        vocabulary=vocabulary[0] if vocabulary else None,
    )
    summary = {"lines": lines, "events": s.events, "invalid": dict(invalid), "model": s.model, "versions": list(profile.versions),
               "features": list(profile.feature_names), "probability_classes": list(profile.probability_classes),
               "embedding_components": profile.embedding_components,
               "vocabulary_words": profile.vocabulary["size"] if profile.vocabulary else 0,
               "sampled": profile.sampled, **({"segment": segment} if segment is not None else {}),
               **({"segments": dict(sorted(s.segments.items()))} if s.segments else {})}
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


def _add_texts(s: _ModelSample, texts: list, cap: int, seed: int) -> None:
    """Add the texts to the model's seeded sample of texts to embed (the draws of the embedding sample)."""
    present = [t for t in texts if t is not None]
    if s.text_slots is None:
        s.text_slots = Reservoir(cap, 1, window_seed(seed, s.model, "", 3))
    for text, slot in zip(present, s.text_slots.add_slots(len(present)).tolist()):
        if slot == len(s.texts):
            s.texts.append(text)
        elif slot >= 0:
            s.texts[slot] = text


def _add_embeddings(s: _ModelSample, events: list, cap: int, seed: int) -> list[str]:
    """Add the events' embeddings to the model's sample; return a rejection reason per wrong-length one."""
    with_embedding = [e.embedding for e in events if e.embedding is not None]
    if not with_embedding:
        return []
    if s.embeddings is None:
        s.embeddings = Reservoir(cap, len(with_embedding[0]), window_seed(seed, s.model, "", 3))
    dim = s.embeddings.width
    kept = [v for v in with_embedding if len(v) == dim]
    if kept:
        s.embeddings.add(np.array(kept, dtype=np.float64))
    return [EMBEDDING_LENGTH_REASON] * (len(with_embedding) - len(kept))


def _fit_embedding(s: _ModelSample, seed: int, config: EmbeddingConfig, encoder) -> dict | None:
    identity = None
    if encoder is not None:
        if len(s.texts) < 4:
            return None
        # In slot order: the sample is a function of the file alone; each text embeds to the same bits in
        # any batch (monitor/onnx/encoder.py), so the profile does not depend on batch_size either.
        rows = encoder.embed(s.texts).astype(np.float64)
        identity = encoder.info()
    elif s.embeddings is None or s.embeddings.rows.shape[0] < 4:
        return None
    else:
        rows = s.embeddings.rows
    projection, reference = fit_reference(rows, components=config.components, whiten=config.whiten,
                                          max_reference=config.reference_size, seed=seed)
    out = {"source": "event" if identity is None else "encoder", "dim": projection.dim,
           "projection": projection.to_dict(), "reference": encode_rows(reference), "seed": seed,
           "settings": {"components": config.components, "whiten": config.whiten}}
    if identity is not None:
        out["encoder"] = identity
    return out
