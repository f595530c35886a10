"""The monitoring pipeline: records → validated events → features → windows → window results.

:class:`Pipeline` is synchronous and has no I/O of its own besides the sinks it is given; sources (file,
stdin, Kafka) feed it batches and decide what to do with the results. Every call returns the typed results
of the windows it closed (:class:`~monitor.results.BatchResults`: window, experiment and shadow results
alike), and the sink sees each of them as it closes. Its whole state can be snapshotted and restored
(:meth:`Pipeline.state`), which is what makes checkpointed exactly-once processing possible.

A batch is processed in two phases. The first is pure, per record: decoding, validation, text and tokenizer
features, the per-stream rows. When it raises for any reason (a bug, a library failing on odd input), the
batch is bisected to find the records that raise; those are rejected as ``internal_error`` (counted,
dead-lettered with their bytes and the exception's type) and the rest is processed as if they had never
arrived. The second phase changes state: windows, counters, sinks; its calls into detectors, sinks and hooks
are guarded so that nothing raised there stops the daemon either.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from detectors.confidence import low_confidence_threshold
from monitor.ab.experiments import ExperimentResult, ExperimentSet
from monitor.ab.labels import JOIN_OUTCOMES as LABEL_OUTCOMES, LabelJoin
from monitor.ab.shadow import JOIN_OUTCOMES, ShadowResult, ShadowWindows
from monitor.config import Config
from monitor.ingest.batch import EMBEDDING_LENGTH_REASON, FUTURE_REASON, Chunk, Featurize, Record, StreamBatch, merge_streams, prepare_chunk
from monitor.ingest.events import DEFAULT_VERSION, REASONS, Event, InvalidEvent
from monitor.ingest.features import base_features
from monitor.ingest.reference import FeatureSet, Profile
from monitor.ingest.tokenizer import TokenizerFeaturizer
from monitor.results import BatchResults, DeadLetter, PipelineStats, Sink, WindowResult
from monitor.windowing.accumulator import CONFIDENCE_COL, BatchSlice, WindowAccumulator
from monitor.windowing.evaluate import window_result
from monitor.windowing.segments import SegmentIndex, fold_segments, profile_detectors, rejection_key
from monitor.windowing.streams import StreamState, hold
from monitor.windowing.text_embeddings import Embedder, TextEmbeddings
from monitor.windowing.watermarks import StreamClock, attribution, clock_at, partition_before, stream_clock
from monitor.windowing.windows import NO_EVENTS_YET, window_start_ms

__all__ = ["Pipeline", "Record", "PipelineStats", "Sink", "ALL_REASONS", "INTERNAL_REASON", "OTHER_STREAM",
           "HELD_STREAMS"]

logger = logging.getLogger("nlpmon.pipeline")

# A record on which processing raised (docs/events.md): isolated by bisection, the rest of its batch goes on.
INTERNAL_REASON = "internal_error"
ALL_REASONS = REASONS + (FUTURE_REASON, EMBEDDING_LENGTH_REASON, INTERNAL_REASON)
# Streams beyond metrics.max_tracked_streams are windowed together under this name (and no segment).
OTHER_STREAM = ("__other__", "__other__", "")
# Rejections of streams not seen yet are held (for the stream's first window) for at most this many
# streams; the oldest is dropped first, so garbage model names cannot grow memory.
HELD_STREAMS = 1024


class Pipeline:
    """Process batches of raw records into closed-window results."""

    def __init__(
        self,
        config: Config,
        *,
        profiles: Mapping[str, Profile] | None = None,
        tokenizer: TokenizerFeaturizer | None = None,
        sink: Sink | None = None,
        dead_letter: DeadLetter | None = None,
        now_ms: Callable[[], int] | None = None,
        on_window_confidences: Callable[[WindowResult, np.ndarray], None] | None = None,
        on_events: Callable[[list[Event]], None] | None = None,
        featurize: Featurize = base_features,
        embedder: Embedder | None = None,
    ):
        self.config = config
        # Called with each closed window's result and its reservoir's confidences (NaN for error events),
        # e.g. for the label-free accuracy estimate; the result is not changed by it.
        self.on_window_confidences = on_window_confidences
        # Called with each batch's valid events before windowing (e.g. to keep a sample of recent texts).
        self.on_events = on_events
        self.tokenizer = tokenizer
        # The batch featurizer; injectable so that tests can make one record raise (poison isolation).
        self._featurize = featurize
        self.features = FeatureSet(tokenizer=tokenizer.info.to_dict() if tokenizer else None)
        # Segment profiles (reference build --by-segment) are named model#segment=...: windowing.segments.
        self.profiles, self._segment_profiles, self._detectors = profile_detectors(
            profiles or {}, self.features, config, embedder.identity if embedder is not None else None)
        # Embedding drift with the encoder nlpmon runs (windowing/text_embeddings.py): the sampled texts of the
        # windows, embedded by a worker thread; None when embeddings come from the events (or not at all).
        self.texts = TextEmbeddings(embedder, {m: p.embedding_projection for m, p in self.profiles.items()
                                               if p.embedding_source == "encoder"},
                                    max_pending=8 * config.embedding.sample_size) if embedder is not None else None
        self.sink = sink
        self.dead_letter = dead_letter
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.stats = PipelineStats()
        self._streams: dict[tuple[str, str, str], StreamState] = {}  # by (model, version, segment)
        self._held: dict[tuple[str, str, str], int] = {}  # rejections of streams not seen yet (HELD_STREAMS)
        self._segments = SegmentIndex()  # each model's segments with a stream (window.max_segments)
        w, m = config.window, config.metrics
        self._size_ms = max(1, int(round(w.size_seconds * 1000)))
        self._lateness_ms = int(round(w.lateness_seconds * 1000))
        self._future_ms = int(round(w.max_future_seconds * 1000))
        self._ttl_ms = int(round(m.stream_ttl_seconds * 1000))
        self._max_tracked = m.max_tracked_streams
        self._time = w.kind == "time"
        # Per model: the configured threshold, or the rule for its profile's number of classes (2 without one).
        setting = config.detect.low_confidence_threshold
        self._low = {m: low_confidence_threshold(len(p.class_counts), setting) for m, p in self.profiles.items()}
        self._low_default = low_confidence_threshold(2, setting)
        self._max_ts_ms = NO_EVENTS_YET  # the partition's (file's) largest event time, idle advances included
        self._event_max_ts_ms = NO_EVENTS_YET  # ... of events only
        self._n_open = 0
        self._due: list[tuple[int, str, str, str, int]] = []  # (partition time to look again, *stream key, key)
        self._expiry: list[tuple[int, str, str, str]] = []  # (partition time to look again, *stream key)
        # A/B experiments and shadow joins (docs/experiments.md); their closed windows are returned with the
        # window results of the same call, so they become durable with the checkpoint that covers them.
        self.experiments = ExperimentSet(config, low_threshold=self.low_threshold) if config.experiments else None
        self.shadow = ShadowWindows(config.shadow, config.window) if config.shadow.enabled else None
        self._joins_reported: dict[str, int] = {}
        # Late label events joined by request id (docs/results.md, *Labels results*), closed like shadow windows.
        self.labels = LabelJoin.from_config(config) if config.labels.enabled else None
        self._labels_reported: dict[str, int] = {}

    # -- public API ----------------------------------------------------------------------------------------
    def low_threshold(self, model: str) -> float:
        """The confidence below which a prediction of ``model`` counts as low (docs/config.md, [detect])."""
        return self._low.get(model, self._low_default)

    def process(self, records: Sequence[Record]) -> BatchResults:
        """Validate and window one batch; return the results of the windows it closed."""
        horizon = self._now_ms() + self._future_ms
        results: list[WindowResult] = []
        experiments: list[ExperimentResult] = []
        shadow: list[ShadowResult] = []
        valid = 0
        for item in self._prepare_isolated(records, horizon):
            if isinstance(item, Chunk):
                valid += len(item.events) + len(item.labels)
                self._apply(item, results, experiments, shadow)
            else:
                self._poison(*item)
        if self.texts is not None:
            self.texts.submit()  # the batch's sampled texts go to the worker; consuming goes on
        results.extend(self._close_by_partition())
        # After the windows: a labels result goes out once its window's result (and estimate) has.
        labels = self._labels_closed(self._guarded("labels", self.labels.close_due) or []) if self.labels else []
        self._expire_streams()
        self._sink("count_records", len(records), valid)
        self._sink("set_open_windows", self._n_open)
        return BatchResults(tuple(results), tuple(experiments), tuple(shadow), tuple(labels))

    def flush(self) -> BatchResults:
        """Close every open window now (results marked ``partial``), e.g. at end of input or shutdown."""
        results = []
        for stream in list(self._streams.values()):
            for start in sorted(stream.open):
                results.append(self._close(stream, start, partial=True))
        self._due.clear()
        experiments = self._experiments_closed(self.experiments.flush()) if self.experiments is not None else []
        shadow = self._shadow_closed(self.shadow.flush()) if self.shadow is not None else []
        labels = self._labels_closed(self.labels.flush()) if self.labels is not None else []
        self._sink("set_open_windows", 0)
        return BatchResults(tuple(results), tuple(experiments), tuple(shadow), tuple(labels))

    def close_idle(self, idle_ms: int) -> BatchResults:
        """The source has been idle for ``idle_ms`` of processing time: close the windows that are due when
        event time is taken to have advanced as much (``window.idle_close_seconds``; not replay-deterministic).
        """
        if not self._time or self._event_max_ts_ms == NO_EVENTS_YET or idle_ms <= 0:
            return BatchResults((), (), ())
        before = self._max_ts_ms
        self._max_ts_ms = max(before, self._event_max_ts_ms + idle_ms)
        results = self._close_by_partition()
        if not results:
            self._max_ts_ms = before  # nothing changed: leave the state as the records made it
        labels = self._labels_closed(self.labels.advance(self._max_ts_ms)) if self.labels is not None else []
        self._expire_streams()
        self._sink("set_open_windows", self._n_open)
        return BatchResults(tuple(results), (), (), tuple(labels))

    def _experiments_closed(self, results: list[ExperimentResult]) -> list[ExperimentResult]:
        for r in results:
            self._sink("experiment_closed", r)
        return results

    def _shadow_closed(self, results: list[ShadowResult]) -> list[ShadowResult]:
        for r in results:
            self._sink("shadow_closed", r)
        # Deltas, so that several partitions' pipelines add up and a restored joiner's counts are not re-sent.
        counters = self.shadow.joiner.counters()
        self._sink("count_shadow_joins", {k: counters[k] - self._joins_reported.get(k, 0) for k in JOIN_OUTCOMES})
        self._sink("set_shadow_pending", counters["pending"])
        self._joins_reported = counters
        return results

    def _labels_closed(self, results: list) -> list:
        for r in results:
            self._sink("labels_closed", r)
        counters = self.labels.counters()  # deltas, as for the shadow joins
        self._sink("count_label_joins", {k: counters[k] - self._labels_reported.get(k, 0) for k in LABEL_OUTCOMES})
        self._sink("set_label_pending", counters["pending"])
        self._labels_reported = counters
        return results

    @property
    def open_windows(self) -> int:
        """Open windows of the (model, version) streams (experiment and shadow windows are not counted)."""
        return self._n_open

    @property
    def tracked_streams(self) -> int:
        return len(self._streams)

    # -- guards --------------------------------------------------------------------------------------------
    def _sink(self, method: str, *args, **kwargs) -> None:
        """Call the sink; a sink that raises is counted and logged (type only), never propagated."""
        if self.sink is not None:
            self._guarded(f"sink.{method}", getattr(self.sink, method), *args, **kwargs)

    def _guarded(self, stage: str, fn: Callable, *args, **kwargs):
        """``fn(*args)``, or None when it raises (counted by stage, logged with the exception's type)."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            self._internal(stage, exc)
            return None

    def _internal(self, stage: str, exc: BaseException) -> None:
        self.stats.internal_errors[stage] += 1
        logger.error("internal error caught in %s (%s); processing goes on", stage, type(exc).__name__)

    def _poison(self, rec: Record, exc: BaseException) -> None:
        # The exception's message may quote the input: only its type leaves the process.
        kind = type(exc).__name__
        self.stats.lines += 1
        self.stats.invalid[INTERNAL_REASON] += 1
        self._sink("count_invalid", INTERNAL_REASON)
        logger.error("poison record isolated (%s) at %s; the rest of its batch is processed", kind, rec.position)
        if self.dead_letter is not None:
            self._guarded("dead_letter", self.dead_letter.write, rec.value, INTERNAL_REASON, kind, rec.position)

    # -- phase 1: pure, per record -------------------------------------------------------------------------
    def _prepare_isolated(self, records: Sequence[Record], horizon: int) -> list:
        """Chunks of records whose pure phase succeeded, and (record, exception) for each one that raised."""
        try:
            return [self._prepare(records, horizon)]
        except Exception as exc:
            if len(records) == 1:
                return [(records[0], exc)]
        mid = len(records) // 2
        return self._prepare_isolated(records[:mid], horizon) + self._prepare_isolated(records[mid:], horizon)

    def _prepare(self, records: Sequence[Record], horizon: int) -> Chunk:
        return prepare_chunk(records, horizon_ms=horizon, max_text_chars=self.config.validation.max_text_chars,
                             features=self.features, tokenizer=self.tokenizer, profiles=self.profiles,
                             featurize=self._featurize, by_segment=self.config.window.by_segment,
                             segment_profiles=self._segment_profiles)

    # -- phase 2: state ------------------------------------------------------------------------------------
    def _apply(self, chunk: Chunk, results: list, experiments: list, shadow: list) -> None:
        events = chunk.events
        self.stats.lines += len(chunk.records)
        self.stats.valid += len(events)
        self.stats.labels += len(chunk.labels)
        for _, rec, exc in chunk.rejected:
            self._count_rejection(rec, exc)
        if events and self.on_events is not None:
            self._guarded("on_events", self.on_events, events)
        if events and self.experiments is not None:
            experiments.extend(self._experiments_closed(self._guarded("experiments", self.experiments.add_events, events) or []))
        if events and self.shadow is not None:
            shadow.extend(self._shadow_closed(self._guarded("shadow", self.shadow.add_events, events) or []))

        p0 = self._max_ts_ms
        run = np.maximum.accumulate(np.maximum(chunk.ts, p0)) if events else chunk.ts
        p_before_ev = np.concatenate(([p0], run[:-1])) if events else run
        groups = self._tracked_groups(self._fold_segments(chunk.streams))
        # Rejections that name a stream, by stream, with their record positions.
        named: dict[tuple[str, str, str], list[int]] = {}
        by_segment, max_segments = self.config.window.by_segment, self.config.window.max_segments
        for r, _, exc in chunk.rejected:
            if exc.model is not None:
                key = (exc.model, exc.version or DEFAULT_VERSION, (exc.segment or "") if by_segment else "")
                named.setdefault(rejection_key(key, self._segments, max_segments, groups), []).append(r)
        for key, rs in named.items():
            if key not in self._streams and key not in groups:
                hold(self._held, HELD_STREAMS, key, len(rs))
        for key, sb in groups.items():
            stream = self._stream(key)
            rs = np.asarray(named.pop(key, ()), dtype=np.int64)
            results.extend(self._add(stream, sb, chunk, run, p_before_ev, p0, rs))
        for key, rs in named.items():  # rejections of known streams without events in this chunk
            stream = self._streams.get(key)
            if stream is not None:
                self._attribute(stream, None, np.asarray(rs, dtype=np.int64), np.zeros(len(rs), np.int64),
                                partition_before(run, p0, np.searchsorted(chunk.pos, rs)), None, "invalid")
        if events:
            self._max_ts_ms = max(p0, int(run[-1]))
            self._event_max_ts_ms = max(self._event_max_ts_ms, int(chunk.ts.max()))
        if self.labels is not None and (events or chunk.labels):
            self._guarded("labels", self.labels.add_chunk, events, chunk.pos, chunk.labels)

    def _count_rejection(self, rec: Record, exc: InvalidEvent) -> None:
        self.stats.invalid[exc.reason] += 1
        self._sink("count_invalid", exc.reason)
        if self.dead_letter is not None:
            self._guarded("dead_letter", self.dead_letter.write, rec.value, exc.reason, exc.detail, rec.position)

    def _fold_segments(self, streams: dict[tuple[str, str, str], StreamBatch]) -> dict[tuple[str, str, str], StreamBatch]:
        """Fold each model's segments over window.max_segments into its segment ``__other__`` (counted)."""
        if not self.config.window.by_segment:
            return streams
        out, n = fold_segments(streams, self._segments, self.config.window.max_segments)
        if n:
            self.stats.segment_folded += n
            self._sink("count_segment_folded", n)
        return out

    def _tracked_groups(self, streams: dict[tuple[str, str, str], StreamBatch]) -> dict[tuple[str, str, str], StreamBatch]:
        """Fold the streams over metrics.max_tracked_streams into one (OTHER_STREAM), in arrival order."""
        out: dict[tuple[str, str], StreamBatch] = {}
        folded: list[StreamBatch] = []
        room = self._max_tracked - len(self._streams)
        for key, sb in streams.items():
            if key in self._streams or key == OTHER_STREAM:
                out[key] = sb
            elif room > (0 if OTHER_STREAM in self._streams else 1):
                out[key] = sb
                room -= 1
            else:
                folded.append(sb)
        if folded:
            n = sum(sb.idx.size for sb in folded)
            self.stats.untracked += n
            self._sink("count_untracked", n)
            if OTHER_STREAM in out:
                folded.append(out.pop(OTHER_STREAM))
            out[OTHER_STREAM] = merge_streams(folded, 2 + len(self.features.base_names))
        return out

    def _stream(self, key: tuple[str, str, str]) -> StreamState:
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = StreamState.for_profile(key[0], key[1], self.profiles.get(key[0]), key[2])
            stream.pending_invalid = self._held.pop(key, 0)
            self._segments.add(key)
        return stream

    def _add(self, stream: StreamState, sb: StreamBatch, chunk: Chunk, run, p_before_ev, p0, rs) -> list[WindowResult]:
        ts, n = sb.ts, sb.ts.size
        rows = sb.rows
        self._sink("observe_batch", stream.model, stream.version,
                   classes=Counter(sb.preds), errors=sum(p is None for p in sb.preds),
                   latency_ms=rows[:, 0], confidence=rows[:, 1], lengths=sb.lengths, last_ts_ms=int(ts.max()),
                   **stream.segment_kw)
        ev_pos = chunk.pos[sb.idx]
        clock = None
        # What waited for a window (read while none of the stream's was open) goes to its next one to open.
        carried = (stream.pending_invalid, stream.pending_late)
        stream.pending_invalid = stream.pending_late = 0
        if self._time:
            clock = stream_clock(ts, p_before_ev[sb.idx], run[sb.idx], max_ts0=stream.max_ts_ms,
                                 last_p0=stream.last_p_ms, frontier0=stream.frontier_ms, idle_ms=self._lateness_ms)
            keys = window_start_ms(ts, self._size_ms)
            late = keys + self._size_ms + self._lateness_ms <= clock.watermark_before
            n_late = int(late.sum())
            keep = ~late if n_late else None
        else:
            keys = (stream.count + np.arange(n, dtype=np.int64)) // self.config.window.events
            n_late, keep = 0, None
        texts = None
        if self.texts is not None and stream.model in self.texts.projections:
            texts = [chunk.events[i].text for i in sb.idx.tolist()]
        new_keys, new_pos = self._route(stream, keys, keep, ts, rows, sb, ev_pos, texts)
        if new_keys.size:
            first = stream.open[int(new_keys[0])]
            first.invalid, first.late = first.invalid + carried[0], first.late + carried[1]
        else:
            stream.pending_invalid, stream.pending_late = carried
        # Late and rejected records count in the window of their stream open at their position.
        if n_late:
            self.stats.late += n_late
            self._sink("count_late", stream.model, stream.version, n_late, **stream.segment_kw)
            lp = ev_pos[late]
            self._attribute(stream, clock, lp, np.flatnonzero(late), p_before_ev[sb.idx][late], (new_keys, new_pos), "late")
        if rs.size:
            self._attribute(stream, clock, rs, np.searchsorted(ev_pos, rs),
                            partition_before(run, p0, np.searchsorted(chunk.pos, rs)), (new_keys, new_pos), "invalid")
        if self._time:
            stream.max_ts_ms = int(clock.max_incl[-1])
            stream.last_p_ms = int(clock.last_p_incl[-1])
            stream.frontier_ms = int(clock.frontier_incl[-1])
            self._queue_expiry(stream)
        else:
            stream.count += n
        return self._close_due(stream)

    def _route(self, stream, keys, keep, ts, rows, sb: StreamBatch, ev_pos, texts=None) -> tuple[np.ndarray, np.ndarray]:
        """Add the kept events to their windows; return the keys of the windows opened and where they opened."""
        preds, labels, entropy = sb.preds, sb.labels, sb.entropy
        if keep is not None:
            sel = np.flatnonzero(keep)
            if sel.size == 0:
                return np.empty(0, np.int64), np.empty(0, np.int64)
            keys, ts, rows, entropy, ev_pos = keys[sel], ts[sel], rows[sel], entropy[sel], ev_pos[sel]
            preds = [preds[i] for i in sel]
            labels = [labels[i] for i in sel]
            texts = [texts[i] for i in sel] if texts is not None else None
        first, last = keys[0], keys[-1]
        if first == last and (keys.size < 3 or (keys == first).all()):
            groups = [(int(first), None, 0)]  # the common case: the whole batch falls into one window
        else:
            uniq, first_idx, inverse = np.unique(keys, return_index=True, return_inverse=True)
            groups = [(int(k), np.flatnonzero(inverse == j), int(first_idx[j])) for j, k in enumerate(uniq)]
        opened: list[tuple[int, int]] = []
        for k, sel, first_i in groups:
            acc = stream.open.get(k)
            if acc is None:
                acc = stream.open[k] = self._new_window(stream, k)
                opened.append((int(ev_pos[first_i]), k))
            if sel is None:
                acc.add(BatchSlice(ts, rows, preds, labels, entropy, self.low_threshold(stream.model)))
            else:
                acc.add(BatchSlice(ts[sel], rows[sel], [preds[i] for i in sel], [labels[i] for i in sel], entropy[sel], self.low_threshold(stream.model)))
            if texts is not None:  # the window's seeded sample of texts, embedded off the hot path
                self.texts.offer(acc, texts if sel is None else [texts[i] for i in sel])
        opened.sort()
        return (np.array([k for _, k in opened], dtype=np.int64), np.array([p for p, _ in opened], dtype=np.int64))

    def _attribute(self, stream: StreamState, clock: StreamClock | None, positions: np.ndarray, k: np.ndarray,
                   p_before: np.ndarray, opened, what: str) -> None:
        """Count late or rejected records (at record ``positions``, each preceded by ``k`` of the stream's
        events of the chunk) in the window of the stream open there, else in its next window to open."""
        if self._time:
            smax, watermark = clock_at(clock, k, p_before, max_ts0=stream.max_ts_ms, last_p0=stream.last_p_ms,
                                       frontier0=stream.frontier_ms, idle_ms=self._lateness_ms)
            target = window_start_ms(smax, self._size_ms)
            is_open = (smax != NO_EVENTS_YET) & (target + self._size_ms + self._lateness_ms > watermark)
        else:
            count = stream.count + k
            target = (count - 1) // self.config.window.events
            is_open = (count > 0) & (count % self.config.window.events != 0)
        keys, at = opened if opened is not None else (np.empty(0, np.int64), np.empty(0, np.int64))
        counts, left = attribution(target, is_open, positions, keys, at)
        for key, n in counts.items():
            acc = stream.open.get(key)
            if acc is None:  # not for a consistent state; never lose the count
                left += n
            elif what == "late":
                acc.late += n
            else:
                acc.invalid += n
        if what == "late":
            stream.pending_late += left
        else:
            stream.pending_invalid += left

    def _new_window(self, stream: StreamState, key: int) -> WindowAccumulator:
        w = self.config.window
        if w.kind == "time":
            start, end, seq = key, key + self._size_ms, 0
            heapq.heappush(self._due, (end + self._lateness_ms, *stream.key, key))
        else:
            start, end, seq = 0, 0, key
        self._n_open += 1
        return WindowAccumulator(
            model=stream.model, version=stream.version, kind=w.kind, start_ms=start, end_ms=end, seq=seq,
            width=stream.row_width(len(self.features.base_names)),
            reservoir_size=w.reservoir_size, seed=w.seed,
            embedding=(stream.embedding_components, self.config.embedding.sample_size), segment=stream.segment,
        )  # fmt: skip

    def _watermark(self, stream: StreamState) -> int:
        """The stream's effective watermark at the current end of the record sequence."""
        idle = self._max_ts_ms - stream.last_p_ms >= self._lateness_ms
        return max(stream.max_ts_ms, stream.frontier_ms, self._max_ts_ms if idle else NO_EVENTS_YET)

    def _close_due(self, stream: StreamState) -> list[WindowResult]:
        if self._time:
            wm = self._watermark(stream) - self._lateness_ms
            due = [k for k, acc in stream.open.items() if acc.end_ms <= wm]
        else:
            due = [k for k, acc in stream.open.items() if acc.events >= self.config.window.events]
        return [self._close(stream, k, partial=False) for k in sorted(due)]

    def _close_by_partition(self) -> list[WindowResult]:
        """Close the windows of streams that went quiet, as the partition's watermark passes them (a heap of
        open windows by the partition time at which each may be due: no scan of every stream)."""
        out = []
        due, p = self._due, self._max_ts_ms
        while due and due[0][0] <= p:
            _, model, version, segment, key = heapq.heappop(due)
            stream = self._streams.get((model, version, segment))
            if stream is None or key not in stream.open:
                continue  # closed meanwhile by the stream's own watermark
            end = stream.open[key].end_ms
            if end + self._lateness_ms <= self._watermark(stream):
                out.append(self._close(stream, key, partial=False))
            else:  # still active: look again once it could have been idle long enough
                heapq.heappush(due, (max(end, stream.last_p_ms) + self._lateness_ms, model, version, segment, key))
        return out

    def _queue_expiry(self, stream: StreamState) -> None:
        if self._ttl_ms > 0 and not stream.expiry_queued:
            stream.expiry_queued = True
            heapq.heappush(self._expiry, (stream.last_p_ms + self._ttl_ms, *stream.key))

    def _expire_streams(self) -> None:
        """Forget streams without events for metrics.stream_ttl_seconds of partition time."""
        exp, p = self._expiry, self._max_ts_ms
        while exp and exp[0][0] <= p:
            key = tuple(heapq.heappop(exp)[1:])
            stream = self._streams.get(key)
            if stream is None:
                continue
            again = stream.expiry_again(p, self._ttl_ms, self._lateness_ms)
            stream.expiry_queued = again is not None
            if again is not None:
                heapq.heappush(exp, (again, *key))
                continue
            del self._streams[key]
            self._segments.remove(key)
            self._sink("forget_stream", stream.model, stream.version, **stream.segment_kw)
            if stream.segment and not any(k[:2] == key[:2] for k in self._streams):  # its (model, version)'s last
                self._sink("forget_stream", stream.model, stream.version)

    def _close(self, stream: StreamState, key: int, *, partial: bool) -> WindowResult:
        if self.texts is not None:
            self.texts.settle()  # the barrier: the window is tested on embedded texts only
        acc = stream.open.pop(key)
        self._n_open -= 1
        names = self.features.base_names + stream.custom
        detectors = self._detectors.get((stream.model, stream.segment)) or self._detectors.get(stream.model)
        kw = dict(min_events=self.config.window.min_events, partial=partial, late=acc.late, invalid=acc.invalid)
        try:
            result = window_result(acc, feature_names=names, detectors=detectors, **kw)
        except Exception as exc:
            # The window's own contents make a detector raise: it still gets a result, untested.
            self._internal("detectors", exc)
            result = dataclasses.replace(window_result(acc, feature_names=names, detectors=None, **kw),
                                         skip_reason=INTERNAL_REASON)
        confidences, estimate = acc.reservoir.rows[:, CONFIDENCE_COL], None
        if self.on_window_confidences is not None:
            estimate = self._guarded("on_window_confidences", self.on_window_confidences, result, confidences)
        if self.labels is not None:  # kept in the checkpointed tally: a restart cannot recompute it differently
            self._guarded("labels", self.labels.window_estimate, result, estimate, confidences)
        self.stats.windows += 1
        self._sink("window_closed", result)
        return result

    # -- checkpoints ---------------------------------------------------------------------------------------
    def state(self) -> dict:
        """A snapshot of every stream's open windows and counters; :meth:`restore` puts it back exactly."""
        if self.texts is not None:
            self.texts.settle()  # the barrier: a checkpoint holds projected embeddings, never a text
        return {
            "max_ts_ms": self._max_ts_ms,
            "event_max_ts_ms": self._event_max_ts_ms,
            "held": [[m, v, n, *([s] if s else [])] for (m, v, s), n in self._held.items()],
            "streams": [s.state() for s in self._streams.values()],
            **({"experiments": self.experiments.state()} if self.experiments is not None else {}),
            **({"shadow": self.shadow.state()} if self.shadow is not None else {}),
            **({"labels": self.labels.state()} if self.labels is not None else {}),
        }  # fmt: skip

    def restore(self, state: dict) -> None:
        # A checkpoint written before partition watermarks: the partition's time is its newest event.
        p = max([s["max_ts_ms"] for s in state["streams"]], default=NO_EVENTS_YET)
        self._max_ts_ms = state.get("max_ts_ms", p)
        self._event_max_ts_ms = state.get("event_max_ts_ms", p)
        # [model, version, n] (segment-less, and every checkpoint written before segments) or [..., segment].
        self._held = {(h[0], h[1], h[3] if len(h) > 3 else ""): h[2] for h in state.get("held", ())}
        for s in state["streams"]:
            stream = StreamState.from_state(s, self.profiles.get(s["model"]), partition_ms=self._max_ts_ms)
            self._streams[stream.key] = stream
            self._segments.add(stream.key)
            for key in stream.refit_open_windows(len(self.features.base_names), self.config.embedding.sample_size):
                logger.warning("open window %s of %s/%s was checkpointed under another reference profile (other "
                               "columns); its sample restarts, its counts are kept", key, stream.model, stream.version)
            for key, acc in stream.open.items():
                self._n_open += 1
                if acc.kind == "time":
                    heapq.heappush(self._due, (acc.end_ms + self._lateness_ms, *stream.key, key))
            if self._time:
                self._queue_expiry(stream)
        # A checkpoint from before experiments were configured has neither key: they start from here.
        if self.experiments is not None and "experiments" in state:
            self.experiments.restore(state["experiments"])
        if self.shadow is not None and "shadow" in state:
            self.shadow.restore(state["shadow"])
            self._joins_reported = self.shadow.joiner.counters()
        if self.labels is not None and "labels" in state:
            self.labels.restore(state["labels"])
            self._labels_reported = self.labels.counters()
