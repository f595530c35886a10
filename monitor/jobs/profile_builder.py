"""Build a reference profile from a JSONL file of prediction-log events (``nlpmon reference build``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from detectors.embedding import fit_reference
from monitor.config import EmbeddingConfig, ExplainConfig
from monitor.ingest.batch import EMBEDDING_LENGTH_REASON, Record
from monitor.ingest.events import Event, InvalidEvent, LabelEvent, decode_event
from monitor.ingest.features import base_features, event_rows, probability_columns
from monitor.ingest.oov import OOV_FEATURE, VocabularyBuilder
from monitor.jobs.reference_tokens import ReferenceTokens
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

__all__ = ["build_profile", "ProfileOptions", "ProfileSummary", "BuiltProfile", "MAX_CUSTOM_FEATURES"]

# Custom feature names and probability classes come from producers; cap them so a buggy producer cannot
# blow up a profile (the first ones seen are kept).
MAX_CUSTOM_FEATURES = 64
MAX_PROBABILITY_CLASSES = 64
# Embedding drift (docs/results.md): the projection (embedding.components, embedding.whiten) is fitted on
# half of a seeded sample of 2 * embedding.reference_size reference embeddings, the events' own or, with an
# encoder, the encoder's of a seeded sample of the reference texts; the other half, projected, is the stored
# reference sample (detectors.embedding).


@dataclass(frozen=True)
class ProfileOptions:
    """Which events of the file make the profile, and how they are sampled.

    ``model`` may be left out when the file holds one model; ``versions`` (empty: all) and ``segment`` (a
    segment profile, docs/results.md *Segments*) narrow it. ``sample_cap`` rows are kept per sample, drawn
    with ``seed``; ``max_text_chars`` is the validation limit the daemon applies; ``embedding`` holds the
    projection settings.
    """

    model: str | None = None
    versions: tuple[str, ...] = ()
    segment: str | None = None
    sample_cap: int = 50_000
    seed: int = 0
    max_text_chars: int = 10_000
    batch_size: int = 2000
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    # The shifted tokens' reference (docs/evidence.md): tokens and their privacy floor.
    explain: ExplainConfig = field(default_factory=ExplainConfig)


@dataclass(frozen=True)
class ProfileSummary:
    """What a build read and kept; ``to_dict()`` is the JSON ``nlpmon reference build`` prints."""

    lines: int
    events: int
    invalid: dict[str, int]
    model: str
    versions: tuple[str, ...]
    features: tuple[str, ...]
    probability_classes: tuple[str, ...]
    embedding_components: int
    vocabulary_words: int
    sampled: bool
    segment: str | None = None
    segments: dict[str, int] = field(default_factory=dict)  # events by segment (reference build --by-segment)

    def to_dict(self) -> dict:
        return {"lines": self.lines, "events": self.events, "invalid": dict(self.invalid), "model": self.model,
                "versions": list(self.versions), "features": list(self.features),
                "probability_classes": list(self.probability_classes),
                "embedding_components": self.embedding_components, "vocabulary_words": self.vocabulary_words,
                "sampled": self.sampled, **({"segment": self.segment} if self.segment is not None else {}),
                **({"segments": dict(self.segments)} if self.segments else {})}


class BuiltProfile(NamedTuple):
    """The profile and the summary of its build (unpacks as ``profile, summary``)."""

    profile: Profile
    summary: ProfileSummary


class _ModelSample:
    """One model's seeded samples of the file: feature rows, custom features, probabilities, embeddings, texts."""

    def __init__(self, model: str, width: int, options: ProfileOptions):
        cap, seed = options.sample_cap, options.seed
        self.model, self.seed, self.embedding_cap = model, seed, 2 * options.embedding.reference_size
        self.rows = Reservoir(cap, width, window_seed(seed, model, "", 0))
        self.custom: dict[str, Reservoir] = {}
        self.probabilities: dict[str, Reservoir] = {}  # one sample per class (BBSD)
        self.embeddings: Reservoir | None = None  # raw embeddings, width fixed by the first one
        self.vocabulary = VocabularyBuilder(cap, seed)  # oov_rate: word counts and held-out texts
        self.tokens = ReferenceTokens(options.explain.min_token_events) if options.explain.tokens else None
        self.texts: list[str] = []  # with an encoder: the sampled texts, by slot of text_slots
        self.text_slots: Reservoir | None = None
        self.classes: Counter[str] = Counter()
        self.versions: set[str] = set()
        self.segments: Counter[str] = Counter()  # events by segment (reference build --by-segment)
        self.events = 0

    def add(self, events: list[Event], rows: np.ndarray, *, embed_texts: bool, tokenizer=None) -> list[str]:
        """Add one batch of this model's events and their feature rows; return a rejection reason per bad one."""
        self.rows.add(rows)
        self.events += len(events)
        self._add_probabilities(events)
        texts = [e.text for e in events]
        self.vocabulary.add(texts)
        if self.tokens is not None:
            self.tokens.add(texts, tokenizer)
        rejected = [] if embed_texts else self._add_embeddings(events)
        if embed_texts:
            self._add_texts(texts)
        for e in events:
            self.versions.add(e.version)
            if e.segment is not None:
                self.segments[e.segment] += 1
            if e.error is None and e.prediction is not None:
                self.classes[e.prediction] += 1
            if e.features:
                self._add_custom(e.features)
        return rejected

    def _add_custom(self, features: dict[str, float]) -> None:
        for name, value in features.items():
            res = self.custom.get(name)
            if res is None:
                # oov_rate is the builder's own feature: a producer's of that name is dropped.
                if len(self.custom) >= MAX_CUSTOM_FEATURES or name == OOV_FEATURE:
                    continue
                res = self.custom[name] = Reservoir(self.rows.capacity, 1, window_seed(self.seed, self.model, name, 1))
            res.add(np.array([[value]]))

    def _add_probabilities(self, events: list[Event]) -> None:
        """Add the batch's class probabilities to each class's sample (batch-independent: one column per class)."""
        for e in events:
            if e.probabilities is not None and e.error is None:
                for c in e.classes:
                    if c not in self.probabilities and len(self.probabilities) < MAX_PROBABILITY_CLASSES:
                        seed = window_seed(self.seed, self.model, c, 2)
                        self.probabilities[c] = Reservoir(self.rows.capacity, 1, seed)
        if not self.probabilities:
            return
        classes = tuple(self.probabilities)
        matrix = probability_columns(events, classes)
        for j, c in enumerate(classes):
            column = matrix[:, j]
            self.probabilities[c].add(column[np.isfinite(column)][:, None])

    def _add_texts(self, texts: list[str | None]) -> None:
        """Add the texts to the model's seeded sample of texts to embed (the draws of the embedding sample)."""
        present = [t for t in texts if t is not None]
        if self.text_slots is None:
            self.text_slots = Reservoir(self.embedding_cap, 1, window_seed(self.seed, self.model, "", 3))
        for text, slot in zip(present, self.text_slots.add_slots(len(present)).tolist()):
            if slot == len(self.texts):
                self.texts.append(text)
            elif slot >= 0:
                self.texts[slot] = text

    def _add_embeddings(self, events: list[Event]) -> list[str]:
        """Add the events' embeddings to the model's sample; return a rejection reason per wrong-length one."""
        with_embedding = [e.embedding for e in events if e.embedding is not None]
        if not with_embedding:
            return []
        if self.embeddings is None:
            seed = window_seed(self.seed, self.model, "", 3)
            self.embeddings = Reservoir(self.embedding_cap, len(with_embedding[0]), seed)
        dim = self.embeddings.width
        kept = [v for v in with_embedding if len(v) == dim]
        if kept:
            self.embeddings.add(np.array(kept, dtype=np.float64))
        return [EMBEDDING_LENGTH_REASON] * (len(with_embedding) - len(kept))


@dataclass
class _Read:
    """What reading the file gave: a sample per model, invalid records by reason, lines read."""

    samples: dict[str, _ModelSample] = field(default_factory=dict)
    invalid: Counter[str] = field(default_factory=Counter)
    lines: int = 0
    # Every valid prediction event's (model, version), selected or not: what an empty selection names.
    seen: set[tuple[str, str]] = field(default_factory=set)

    def nothing_selected(self, path: str, options: ProfileOptions) -> ProfileError:
        """The error for a file with no valid event of the selection, naming the models (versions) it holds."""
        what = f" for model {options.model!r}" if options.model else ""
        if options.versions:
            what += f" version {', '.join(options.versions)}"
        if options.segment is not None:
            what += f" segment {options.segment!r}"
        counts = f" (read {self.lines} lines, {sum(self.invalid.values())} invalid)"
        models = sorted({m for m, _ in self.seen})
        if options.model in models:
            held = f"; versions of {options.model!r} in the file: " + ", ".join(
                sorted(v for m, v in self.seen if m == options.model))
        else:
            held = f"; models in the file: {', '.join(models)}" if models else ""
        return ProfileError(f"{path}: no valid events{what}{counts}{held}")


def build_profile(
    path: str,
    options: ProfileOptions = ProfileOptions(),
    *,
    tokenizer: TokenizerFeaturizer | None = None,
    encoder=None,
    batches: Iterable[list[Record]] | None = None,
) -> BuiltProfile:
    """Return the profile of ``options.model`` (or of the only model in the file) and a summary of what was
    read; with ``options.segment``, of that segment's events only (a segment profile).

    ``encoder`` (a ``monitor.onnx.encoder.OnnxEncoder``, the daemon's ``[embedding] model``) embeds a seeded
    sample of the reference texts, and the events' own ``embedding`` fields are then ignored.

    ``batches`` (records already in memory, e.g. ``monitor.api.compare``'s rows) are read instead of the file;
    ``path`` then only names them in the profile's ``source`` (no ``source_sha256``).
    """
    features = FeatureSet(tokenizer=tokenizer.info.to_dict() if tokenizer else None)
    read = _read(path, options, features, tokenizer=tokenizer, embed_texts=encoder is not None, batches=batches)
    if not read.samples:
        raise read.nothing_selected(path, options)
    if len(read.samples) > 1:
        names = ", ".join(sorted(read.samples))
        raise ProfileError(f"{path} holds events of several models ({names}); choose one with --model")
    s = next(iter(read.samples.values()))
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
        source=path if batches is not None else str(Path(path).resolve()) if path != "-" else "stdin",
        source_sha256=file_sha256(path) if path != "-" and batches is None else "",
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
        sample_cap=options.sample_cap,
        sampled=s.rows.sampled,
        probabilities={c: _finite(s.probabilities[c].rows[:, 0]) for c in sorted(s.probabilities)},
        embedding=_fit_embedding(s, options.embedding, encoder),
        segment=options.segment,
        vocabulary=vocabulary[0] if vocabulary else None,
        tokens=s.tokens.finish(tokenizer) if s.tokens is not None else None,
    )
    summary = ProfileSummary(
        lines=read.lines, events=s.events, invalid=dict(read.invalid), model=s.model, versions=profile.versions,
        features=profile.feature_names, probability_classes=profile.probability_classes,
        embedding_components=profile.embedding_components,
        vocabulary_words=profile.vocabulary["size"] if profile.vocabulary else 0, sampled=profile.sampled,
        segment=options.segment, segments=dict(sorted(s.segments.items())),
    )  # fmt: skip
    return BuiltProfile(profile, summary)


def _read(path: str, options: ProfileOptions, features: FeatureSet, *, tokenizer, embed_texts: bool,
          batches: Iterable[list[Record]] | None = None) -> _Read:
    """Read the file (or ``batches``) batch by batch into a sample per model of the events ``options`` selects."""
    read = _Read()
    width = 2 + len(features.base_names)
    stream, name = open_source(path) if batches is None else (None, path)
    try:
        for batch in iter_batches(stream, name, options.batch_size) if batches is None else batches:
            read.lines += len(batch)
            events = _select(batch, options, read.invalid, read.seen)
            if not events:
                continue
            rows = event_rows(events, base_features(events, features, tokenizer).matrix, ())
            by_model: dict[str, list[int]] = {}
            for i, e in enumerate(events):
                by_model.setdefault(e.model, []).append(i)
            for m, idx in by_model.items():
                s = read.samples.get(m)
                if s is None:
                    s = read.samples[m] = _ModelSample(m, width, options)
                for reason in s.add([events[i] for i in idx], rows[idx], embed_texts=embed_texts, tokenizer=tokenizer):
                    read.invalid[reason] += 1
    finally:
        if stream is not None and name != "stdin":
            stream.close()
    return read


def _select(batch: list, options: ProfileOptions, invalid: Counter[str], seen: set[tuple[str, str]]) -> list[Event]:
    """The batch's valid prediction events of the model, versions and segment asked for; count the invalid and
    add every valid event's (model, version) to ``seen``."""
    events = []
    for rec in batch:
        try:
            e = decode_event(rec.value, max_text_chars=options.max_text_chars)
        except InvalidEvent as exc:
            invalid[exc.reason] += 1
            continue
        if type(e) is LabelEvent:  # the true class of a logged prediction: not part of a profile
            continue
        seen.add((e.model, e.version))
        o = options
        if ((o.model is None or e.model == o.model) and (not o.versions or e.version in o.versions)
                and (o.segment is None or e.segment == o.segment)):
            events.append(e)
    return events


def _finite(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[np.isfinite(a)])


def _fit_embedding(s: _ModelSample, config: EmbeddingConfig, encoder) -> dict | None:
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
                                          max_reference=config.reference_size, seed=s.seed)
    out = {"source": "event" if identity is None else "encoder", "dim": projection.dim,
           "projection": projection.to_dict(), "reference": encode_rows(reference), "seed": s.seed,
           "settings": {"components": config.components, "whiten": config.whiten}}
    if identity is not None:
        out["encoder"] = identity
    return out
