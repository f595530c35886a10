"""Drift per segment (``window.by_segment``): which of a model's segments keep their own streams.

A stream is (model, version, segment), the segment "" for events without one. The first
``window.max_segments`` segments of a model (across its versions, per partition) to arrive keep their own
windows; the events of any further segment are windowed together under :data:`OTHER_SEGMENT`, so memory and
label cardinality stay bounded whatever segment names producers send. Admission follows the record sequence
only (the known segments are those of the pipeline's streams, which its checkpoint holds), so a restarted
daemon folds exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from monitor.ingest.batch import StreamBatch, merge_streams
from monitor.config import Config
from monitor.ingest.reference import Profile, ProfileError
from monitor.windowing.evaluate import StreamDetectors

__all__ = ["profile_detectors", "OTHER_SEGMENT", "SEGMENT_PROFILE_MARK", "SegmentIndex", "fold_segments", "rejection_key", "profile_name",
           "split_profiles", "segment_detectors"]

OTHER_SEGMENT = "__other__"
# A segment's own reference profile is named "<model>#segment=<segment>": its key among the daemon's
# profiles and in the store's reference_profiles.model column (docs/storage.md), beside its model's.
SEGMENT_PROFILE_MARK = "#segment="


def profile_name(model: str, segment: str | None) -> str:
    """The name a profile is known by: its model's, or the model's and its segment's."""
    return model if segment is None else f"{model}{SEGMENT_PROFILE_MARK}{segment}"


def split_profiles(profiles: Mapping[str, Profile]) -> tuple[dict[str, Profile], dict[tuple[str, str], Profile]]:
    """The model profiles by model, and the segment profiles by (model, segment) (their ``segment`` field)."""
    models: dict[str, Profile] = {}
    segments: dict[tuple[str, str], Profile] = {}
    for name, profile in profiles.items():
        if profile.segment is None:
            models[name] = profile
        else:
            segments[(profile.model, profile.segment)] = profile
    return models, segments


def segment_detectors(profile: Profile, model_profile: Profile | None, model_detectors: StreamDetectors | None,
                      config: Config) -> StreamDetectors:
    """The detectors of a segment's windows, from its own profile.

    A stream's rows have its model profile's columns (custom features, ``oov_rate``, probability classes), so
    the segment's profile must have the same ones (its ``oov_rate`` is scored against its own vocabulary); its embedding drift is tested against the model's reference, since the
    rows carry embeddings projected with the model's projection.
    """
    where = f"reference profile of model {profile.model!r} segment {profile.segment!r}"
    if model_profile is None:
        raise ProfileError(f"{where}: the model has no reference profile of its own (segments start from it)")
    for what in ("stream_features", "probability_classes"):
        if getattr(profile, what) != getattr(model_profile, what):
            raise ProfileError(f"{where}: its {what} differ from the model profile's; build both from the same events")
    detectors = StreamDetectors(profile, config.detect, config.embedding)
    detectors.embedding = model_detectors.embedding if model_detectors is not None else None
    return detectors

def profile_detectors(profiles: Mapping[str, Profile], features, config: Config, encoder: dict | None
                      ) -> tuple[dict[str, Profile], dict[tuple[str, str], Profile], dict]:
    """The pipeline's model profiles, segment profiles and detectors (by model, and by (model, segment)), each
    profile checked against the daemon's features and ``encoder`` identity (None: no ``[embedding] model``)."""
    models, segments = split_profiles(profiles)
    for model, profile in models.items():
        profile.check_compatible(features)  # the message names the model
        profile.check_embedding(encoder, components=config.embedding.components,
                                whiten=config.embedding.whiten)
    detectors: dict = {m: StreamDetectors(p, config.detect, config.embedding) for m, p in models.items()}
    for (model, segment), profile in segments.items():  # a segment's windows are tested against its own
        profile.check_compatible(features, origin=f"segment {segment}")
        detectors[(model, segment)] = segment_detectors(profile, models.get(model), detectors.get(model), config)
    return models, segments, detectors


StreamKey = tuple[str, str, str]


class SegmentIndex:
    """The segments each model has streams for (derived from the pipeline's streams; not checkpointed)."""

    def __init__(self) -> None:
        self._by_model: dict[str, Counter[str]] = {}

    def add(self, key: StreamKey) -> None:
        model, _, segment = key
        if segment and segment != OTHER_SEGMENT:
            self._by_model.setdefault(model, Counter())[segment] += 1

    def remove(self, key: StreamKey) -> None:
        model, _, segment = key
        counts = self._by_model.get(model)
        if counts is None or segment not in counts:
            return
        counts[segment] -= 1
        if counts[segment] <= 0:
            del counts[segment]
        if not counts:
            del self._by_model[model]

    def known(self, model: str) -> int:
        counts = self._by_model.get(model)
        return len(counts) if counts else 0

    def has(self, model: str, segment: str) -> bool:
        counts = self._by_model.get(model)
        return bool(counts) and segment in counts


def _admit(key: StreamKey, index: SegmentIndex, max_segments: int, admitted: dict[str, set[str]]) -> bool:
    """Whether the segment of ``key`` keeps its own stream, given the segments admitted earlier in the same batch."""
    model, _, segment = key
    if not segment or segment == OTHER_SEGMENT or index.has(model, segment):
        return True
    new = admitted.setdefault(model, set())
    if segment in new:
        return True
    if index.known(model) + len(new) >= max_segments:
        return False
    new.add(segment)
    return True


def fold_segments(streams: dict[StreamKey, StreamBatch], index: SegmentIndex,
                  max_segments: int) -> tuple[dict[StreamKey, StreamBatch], int]:
    """The batch's streams with each model's segments over ``max_segments`` merged into its (model, version,
    ``__other__``) stream, in arrival order; and how many events were folded."""
    admitted: dict[str, set[str]] = {}
    out: dict[StreamKey, StreamBatch] = {}
    folded: dict[StreamKey, list[StreamBatch]] = {}
    for key, sb in streams.items():
        if _admit(key, index, max_segments, admitted):
            out[key] = sb
        else:
            folded.setdefault((key[0], key[1], OTHER_SEGMENT), []).append(sb)
    n = 0
    for key, parts in folded.items():
        n += sum(sb.idx.size for sb in parts)
        if key in out:
            parts.append(out.pop(key))
        out[key] = merge_streams(parts, parts[0].rows.shape[1])
    return out, n


def rejection_key(key: StreamKey, index: SegmentIndex, max_segments: int, groups: dict) -> StreamKey:
    """The stream a rejected record of ``key`` counts in: its segment's, or ``__other__`` when the segment
    has no stream and the model has no room for one."""
    model, version, segment = key
    if not segment or segment == OTHER_SEGMENT or index.has(model, segment) or key in groups:
        return key
    new = {k[2] for k in groups if k[0] == model and k[2] and k[2] != OTHER_SEGMENT and not index.has(model, k[2])}
    return (model, version, OTHER_SEGMENT) if index.known(model) + len(new) >= max_segments else key
