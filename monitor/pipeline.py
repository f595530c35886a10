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
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from monitor.ab.experiments import ExperimentResult
from monitor.ab.parts import JoinParts
from monitor.ab.shadow import ShadowResult
from monitor.config import Config
from monitor.ingest.batch import EMBEDDING_LENGTH_REASON, FUTURE_REASON, Chunk, Featurize, Record, StreamBatch, prepare_chunk
from monitor.ingest.events import REASONS, Event, InvalidEvent
from monitor.ingest.features import base_features
from monitor.ingest.reference import FeatureSet, Profile
from monitor.ingest.tokenizer import TokenizerFeaturizer
from monitor.results import BatchResults, DeadLetter, PipelineStats, Sink, WindowResult
from monitor.windowing.accumulator import CONFIDENCE_COL, WindowAccumulator
from monitor.windowing.evaluate import window_evidence, window_result
from monitor.windowing.evidence import EvidencePlans
from monitor.windowing.segments import fold_segments, profile_detectors
from monitor.windowing.stream_table import HELD_STREAMS, OTHER_STREAM, StreamTable
from monitor.windowing.streams import StreamState
from monitor.windowing.text_embeddings import Embedder, TextEmbeddings
from monitor.windowing.watermarks import PartitionRun
from monitor.windowing.windows import NO_EVENTS_YET

__all__ = ["Pipeline", "Record", "PipelineStats", "Sink", "ALL_REASONS", "INTERNAL_REASON", "OTHER_STREAM",
           "HELD_STREAMS"]

logger = logging.getLogger("nlpmon.pipeline")

# A record on which processing raised (docs/events.md): isolated by bisection, the rest of its batch goes on.
INTERNAL_REASON = "internal_error"
ALL_REASONS = REASONS + (FUTURE_REASON, EMBEDDING_LENGTH_REASON, INTERNAL_REASON)


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
        # The evidence kept with every window ([explain], docs/evidence.md), by profile.
        self._explain = EvidencePlans(config.explain, self.profiles, self._segment_profiles, tokenizer,
                                      base_names=self.features.base_names)
        self.sink = sink
        self.dead_letter = dead_letter
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.stats = PipelineStats()
        # The partition's streams, each with its own windows (by (model, version, segment)), and its clock.
        self._streams = StreamTable(config, self.profiles, base_width=len(self.features.base_names))
        self._future_ms = int(round(config.window.max_future_seconds * 1000))
        # A/B experiments, shadow joins and the label join (monitor/ab/parts.py), each None when not configured.
        self.joins = JoinParts(config, low_threshold=self.low_threshold, sink=self._sink, guarded=self._guarded)
        self.experiments, self.shadow, self.labels = self.joins.experiments, self.joins.shadow, self.joins.labels

    # -- public API ----------------------------------------------------------------------------------------
    def low_threshold(self, model: str) -> float:
        """The confidence below which a prediction of ``model`` counts as low (docs/config.md, [detect])."""
        return self._streams.low_threshold(model)

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
        results.extend(self._evaluate(self._streams.close_by_partition()))
        # After the windows: a labels result goes out once its window's result (and estimate) has.
        labels = self.joins.labels_due()
        self._expire_streams()
        self._sink("count_records", len(records), valid)
        self._sink("set_open_windows", self._streams.n_open)
        return BatchResults(tuple(results), tuple(experiments), tuple(shadow), tuple(labels))

    def flush(self) -> BatchResults:
        """Close every open window now (results marked ``partial``), e.g. at end of input or shutdown."""
        results = self._evaluate(self._streams.close_all(), partial=True)
        experiments, shadow, labels = self.joins.flush()
        self._sink("set_open_windows", 0)
        return BatchResults(tuple(results), tuple(experiments), tuple(shadow), tuple(labels))

    def close_idle(self, idle_ms: int) -> BatchResults:
        """The source has been idle for ``idle_ms`` of processing time: close the windows that are due when
        event time is taken to have advanced as much (``window.idle_close_seconds``; not replay-deterministic).
        """
        streams = self._streams
        if not streams.spec.time or streams.event_max_ms == NO_EVENTS_YET or idle_ms <= 0:
            return BatchResults((), (), ())
        before = streams.partition_ms
        advanced = streams.partition_ms = max(before, streams.event_max_ms + idle_ms)
        results = self._evaluate(streams.close_by_partition())
        if not results:
            streams.partition_ms = before  # nothing changed: leave the state as the records made it
        # The label periods advance with idle time whether or not a window closed now (the last window of a
        # quiet source closed at an earlier idle advance; its labels result is due idle_ms later still).
        labels = self.joins.labels_advanced(advanced)
        self._expire_streams()
        self._sink("set_open_windows", streams.n_open)
        return BatchResults(tuple(results), (), (), tuple(labels))

    @property
    def open_windows(self) -> int:
        """Open windows of the (model, version) streams (experiment and shadow windows are not counted)."""
        return self._streams.n_open

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
        if events:
            self.joins.add_events(events, experiments, shadow)

        # The chunk's labels join before its windows close: a window's label evidence (TallyBook.evidence) is
        # then the same whatever the batching.
        if self.labels is not None and (events or chunk.labels):
            self._guarded("labels", self.labels.add_chunk, events, chunk.pos, chunk.labels)
        part = PartitionRun.over(chunk.ts, chunk.pos, self._streams.partition_ms)
        groups = self._tracked_groups(self._fold_segments(chunk.streams))
        named = self._streams.name_rejections(chunk.rejected, groups)  # by stream, with their record positions
        for key, sb in groups.items():
            rs = np.asarray(named.pop(key, ()), dtype=np.int64)
            results.extend(self._add(self._streams.stream(key), sb, part, chunk=chunk, rejected=rs))
        self._streams.attribute_rejections(named, part)  # of known streams without events in this chunk
        self._streams.advance(part, chunk.ts)

    def _count_rejection(self, rec: Record, exc: InvalidEvent) -> None:
        self.stats.invalid[exc.reason] += 1
        self._sink("count_invalid", exc.reason)
        if self.dead_letter is not None:
            self._guarded("dead_letter", self.dead_letter.write, rec.value, exc.reason, exc.detail, rec.position)

    def _fold_segments(self, streams: dict[tuple[str, str, str], StreamBatch]) -> dict[tuple[str, str, str], StreamBatch]:
        """Fold each model's segments over window.max_segments into its segment ``__other__`` (counted)."""
        if not self.config.window.by_segment:
            return streams
        out, n = fold_segments(streams, self._streams.segments, self.config.window.max_segments)
        if n:
            self.stats.segment_folded += n
            self._sink("count_segment_folded", n)
        return out

    def _tracked_groups(self, streams: dict[tuple[str, str, str], StreamBatch]) -> dict[tuple[str, str, str], StreamBatch]:
        """Fold the streams over metrics.max_tracked_streams into one (OTHER_STREAM), counted."""
        out, n = self._streams.tracked(streams)
        if n:
            self.stats.untracked += n
            self._sink("count_untracked", n)
        return out

    def _add(self, stream: StreamState, sb: StreamBatch, part: PartitionRun, *, chunk: Chunk,
             rejected: np.ndarray) -> list[WindowResult]:
        """Window one stream's events of the chunk (and its ``rejected`` records); evaluate what closes."""
        ts, rows = sb.ts, sb.rows
        # One pass over the predictions for the sink and the windows (the sink gets a copy it may keep).
        classes = Counter(sb.preds)
        self._sink("observe_batch", stream.model, stream.version, classes=classes.copy(), errors=classes.get(None, 0),
                   latency_ms=rows[:, 0], confidence=rows[:, 1], lengths=sb.lengths, last_ts_ms=int(ts.max()),
                   **stream.segment_kw)
        texts, offer, events = None, None, chunk.events
        if self.texts is not None and stream.model in self.texts.projections:
            texts, offer = [events[i].text for i in sb.idx.tolist()], self.texts.offer
        evidence = self._evidence_inputs(stream, sb, chunk, texts)
        n_late, due = self._streams.add(stream, sb, part, rejected, texts=texts, offer=offer, evidence=evidence,
                                        classes=classes)
        if n_late:
            self.stats.late += n_late
            self._sink("count_late", stream.model, stream.version, n_late, **stream.segment_kw)
        return self._evaluate(due)

    def _evidence_inputs(self, stream: StreamState, sb: StreamBatch, chunk: Chunk, texts: list | None):
        """The stream batch's evidence inputs (windowing/evidence.py); None with [explain] off or when they raise."""
        plan = self._explain.plan(stream.model, stream.segment, stream.custom)
        width = stream.row_width(len(self.features.base_names))
        return self._guarded("evidence", plan.batch, sb, chunk, texts, width=width) if plan is not None else None

    def _expire_streams(self) -> None:
        """Forget streams without events for metrics.stream_ttl_seconds of partition time."""
        for stream, last in self._streams.expire():
            self._sink("forget_stream", stream.model, stream.version, **stream.segment_kw)
            if stream.segment and last:  # its (model, version)'s last
                self._sink("forget_stream", stream.model, stream.version)

    def _evaluate(self, closed: list[tuple[StreamState, WindowAccumulator]], *, partial: bool = False) -> list[WindowResult]:
        return [self._close(stream, acc, partial=partial) for stream, acc in closed]

    def _close(self, stream: StreamState, acc: WindowAccumulator, *, partial: bool) -> WindowResult:
        if self.texts is not None:
            self.texts.settle()  # the barrier: the window is tested on embedded texts only
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
        plan = self._explain.plan(stream.model, stream.segment, stream.custom)
        if plan is not None:  # stored beside the result, never in its JSON (docs/evidence.md)
            evidence = self._guarded("evidence", window_evidence, acc, plan, feature_names=names,
                                     classes=stream.probability_classes)
            result = dataclasses.replace(result, evidence=evidence)
        result = self._estimate(result, acc.reservoir.rows[:, CONFIDENCE_COL])
        self.stats.windows += 1
        self._sink("window_closed", result)
        return result

    def _estimate(self, result: WindowResult, confidences: np.ndarray) -> WindowResult:
        """The window's accuracy estimate (docs/results.md, *The estimate*): one estimator, the held-out table
        (through ``on_window_confidences``) updated by the realised labels (``labels.book.evidence``)."""
        evidence = self._guarded("labels", self.labels.book.evidence, result) if self.labels is not None else None
        estimate = None
        if self.on_window_confidences is not None:
            kw = {"evidence": evidence} if evidence is not None else {}
            estimate = self._guarded("on_window_confidences", self.on_window_confidences, result, confidences, **kw)
        elif evidence is not None:  # no re-evaluation table: realised labels alone
            estimate = self._guarded("labels", self.labels.book.estimate, result, confidences, evidence)
        interval = estimate if hasattr(estimate, "low") else None
        if interval is not None:
            result, estimate = dataclasses.replace(result, accuracy_estimate=interval), interval.estimate
        if self.labels is not None:  # kept in the checkpointed tally: a restart cannot recompute it differently
            self._guarded("labels", self.labels.window_estimate, result, estimate, interval)
        return result

    # -- checkpoints ---------------------------------------------------------------------------------------
    def state(self) -> dict:
        """A snapshot of every stream's open windows and counters; :meth:`restore` puts it back exactly."""
        if self.texts is not None:
            self.texts.settle()  # the barrier: a checkpoint holds projected embeddings, never a text
        return {
            **self._streams.state(),  # max_ts_ms, event_max_ts_ms, held, streams
            **self.joins.state(),  # experiments, shadow, labels: each when configured
        }  # fmt: skip

    def restore(self, state: dict) -> None:
        for stream, key in self._streams.restore(state):
            logger.warning("open window %s of %s/%s was checkpointed under another reference profile (other "
                           "columns); its sample restarts, its counts are kept", key, stream.model, stream.version)
        self.joins.restore(state)
