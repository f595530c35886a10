"""The pure, per-record half of processing a batch: decode, validate, featurize, split by stream.

Nothing here touches state, so when it raises (a bug, a library failing on odd input) the pipeline can split
the batch and run it again on each half to find the records that raise, without any side effect to undo.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.text_features import BatchWords
from monitor.ingest.events import Event, InvalidEvent, LabelEvent, decode_event
from monitor.ingest.features import BatchFeatures, entropies, event_rows, scored
from monitor.ingest.reference import FeatureSet, Profile
from monitor.ingest.tokenizer import TokenizerFeaturizer

__all__ = ["Record", "FUTURE_REASON", "EMBEDDING_LENGTH_REASON", "StreamBatch", "Chunk", "prepare_chunk", "merge_streams", "Featurize"]

# Rejected by the pipeline rather than by the event validator: needs the wall clock.
FUTURE_REASON = "future_timestamp"
# Also by the pipeline: the length an embedding must have is its stream's (its reference profile's).
EMBEDDING_LENGTH_REASON = "embedding_length_mismatch"

Featurize = Callable[[Sequence[Event], FeatureSet, "TokenizerFeaturizer | None"], BatchFeatures]



@dataclass(frozen=True, slots=True)
class Record:
    """One raw record from a source and where it came from (``file.jsonl:12``, ``topic/0@812``)."""

    value: bytes
    position: str = ""

@dataclass(slots=True)
class StreamBatch:
    """One stream's events of a chunk, with their rows computed (arrival order)."""

    idx: np.ndarray  # indices into the chunk's events
    ts: np.ndarray
    rows: np.ndarray  # latency, confidence, base features, the stream's custom features, class probabilities
    preds: list  # class, or None for error events
    labels: list
    entropy: np.ndarray
    lengths: np.ndarray
    # The events' lower-cased words as ids of the word table, as the text features split them (None when the
    # featurizer kept none): oov_rate and the evidence's token sets reuse them (windowing/evidence.py).
    words: BatchWords | None = None


@dataclass(slots=True)
class Chunk:
    """A run of records whose pure phase succeeded."""

    records: Sequence  # the monitor.pipeline.Record objects
    events: list[Event]
    pos: np.ndarray  # record index (in the chunk) of each event
    ts: np.ndarray
    rejected: list[tuple[int, object, InvalidEvent]]  # (record index, record, why)
    streams: dict[tuple[str, str, str], StreamBatch]  # by (model, version, segment); segment "" without
    # Label events (kind "label", record index, event): never windowed, never counted as predictions.
    labels: list[tuple[int, LabelEvent]] = field(default_factory=list)


def prepare_chunk(records: Sequence, *, horizon_ms: int, max_text_chars: int, features: FeatureSet,
                  tokenizer: TokenizerFeaturizer | None, profiles: dict[str, Profile], featurize: Featurize,
                  by_segment: bool = False, segment_profiles: Mapping[tuple[str, str], Profile] | None = None) -> Chunk:
    """Decode and validate every record, featurize the valid ones, split them by (model, version, segment)
    (the segment only ``by_segment``; "" otherwise and for events without one). A segment with a profile of
    its own (``segment_profiles``, by (model, segment)) has its ``oov_rate`` scored against that profile's
    vocabulary, the one its reference values were scored against."""
    events: list[Event] = []
    rejected: list[tuple[int, object, InvalidEvent]] = []
    labels: list[tuple[int, LabelEvent]] = []
    for i, rec in enumerate(records):
        try:
            e = decode_event(rec.value, max_text_chars=max_text_chars)
        except InvalidEvent as exc:
            rejected.append((i, rec, exc))
            continue
        if e.ts_ms > horizon_ms:
            # One producer with a wrong clock must not close every window of its stream.
            # (A label event has no segment: its prediction's stream is the one it counts in.)
            rejected.append((i, rec, InvalidEvent(FUTURE_REASON, "ts is further in the future than window.max_future_seconds",
                                                  e.model, e.version, segment=getattr(e, "segment", None))))
            continue
        if type(e) is LabelEvent:
            labels.append((i, e))
            continue
        if e.embedding is not None:
            profile = profiles.get(e.model)
            if profile is not None and profile.event_projection and len(e.embedding) != profile.embedding["dim"]:
                rejected.append((i, rec, InvalidEvent(EMBEDDING_LENGTH_REASON, "embedding length differs from the "
                                                      "reference profile's", e.model, e.version, segment=e.segment)))
                continue
        events.append(e)
    pos = _positions(len(records), rejected, labels)
    ts = np.fromiter([e.ts_ms for e in events], dtype=np.int64, count=len(events))
    streams: dict[tuple[str, str, str], StreamBatch] = {}
    if events:
        batch = featurize(events, features, tokenizer)
        for key, idx in _by_stream(events, by_segment).items():
            evs = [events[i] for i in idx] if len(idx) < len(events) else events
            profile = profiles.get(key[0])
            words_of = (segment_profiles or {}).get((key[0], key[2]), profile) if key[2] else profile
            ia = np.asarray(idx, dtype=np.intp) if len(idx) < len(events) else np.arange(len(events), dtype=np.intp)
            words = _pick(batch.words, idx, len(events))
            probabilities = scored(evs)
            streams[key] = StreamBatch(
                ia, ts[ia], event_rows(evs, batch.matrix[ia], profile.custom_features if profile else (),
                                       probability_classes=profile.probability_classes if profile else (),
                                       projection=profile.event_projection if profile else None,
                                       vocabulary=words_of.oov_vocabulary if words_of else None,
                                       words=words, probabilities=probabilities),
                _predictions(evs, probabilities.unscored), [e.label for e in evs],
                entropies(evs, probabilities), batch.lengths[ia], words,
            )  # fmt: skip
    return Chunk(records, events, pos, ts, rejected, streams, labels)


def _predictions(events: list[Event], unscored: list[int]) -> list:
    """Each event's class, None for an event that failed. A failed event is one of ``unscored`` (its
    probabilities are not read), so only those are looked at again when they are few: ~30% less than
    testing every event's ``error``."""
    if len(unscored) * 4 > len(events):
        return [None if e.error is not None else e.prediction for e in events]
    preds = [e.prediction for e in events]
    for i in unscored:
        if events[i].error is not None:
            preds[i] = None
    return preds


def _positions(n: int, rejected: list, labels: list) -> np.ndarray:
    """The record index of each event: those of the ``n`` records that are neither rejected nor labels. In
    numpy rather than one append per event (labels and rejections are the rare records)."""
    if not rejected and not labels:
        return np.arange(n, dtype=np.int64)
    keep = np.ones(n, dtype=bool)
    keep[[r[0] for r in rejected]] = False
    keep[[lab[0] for lab in labels]] = False
    return np.flatnonzero(keep).astype(np.int64, copy=False)


def _by_stream(events: list[Event], by_segment: bool) -> dict[tuple[str, str, str], Sequence[int]]:
    """The indices of each stream's events, by (model, version, segment) (segment "" unless ``by_segment``).

    A batch is usually one stream: comparing each event's strings with the first's (stopping at the first
    that differs) costs a third of keying and grouping every event."""
    first = events[0]
    model, version, segment = first.model, first.version, first.segment if by_segment else None
    for e in events:
        if e.model != model or e.version != version or (by_segment and e.segment != segment):
            break
    else:
        return {(model, version, (segment or "") if by_segment else ""): range(len(events))}
    by_stream: dict[tuple[str, str, str], list[int]] = {}
    for i, e in enumerate(events):
        by_stream.setdefault((e.model, e.version, (e.segment or "") if by_segment else ""), []).append(i)
    return by_stream


def _pick(words: BatchWords | None, idx: list[int], n: int) -> BatchWords | None:
    """``words`` of the stream's events (all of them, as they are, when the chunk is one stream)."""
    if words is None or len(idx) == n:
        return words
    return words.take(idx)


def merge_streams(parts: list[StreamBatch], width: int) -> StreamBatch:
    """Several streams' events as one stream (arrival order), keeping the first ``width`` row columns."""
    order = np.argsort(np.concatenate([sb.idx for sb in parts]), kind="stable")

    def cat(arrays):
        return np.concatenate(arrays)[order]

    preds = [p for sb in parts for p in sb.preds]
    labels = [v for sb in parts for v in sb.labels]
    return StreamBatch(
        cat([sb.idx for sb in parts]), cat([sb.ts for sb in parts]), cat([sb.rows[:, :width] for sb in parts]),
        [preds[i] for i in order], [labels[i] for i in order], cat([sb.entropy for sb in parts]),
        cat([sb.lengths for sb in parts]),
    )  # fmt: skip
