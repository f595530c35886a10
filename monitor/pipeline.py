"""The monitoring pipeline: records → validated events → features → windows → window results.

:class:`Pipeline` is synchronous and has no I/O of its own besides the sinks it is given; sources (file,
stdin, Kafka) feed it batches and decide what to do with the results. Every call returns the typed results
of the windows it closed (:class:`~monitor.results.BatchResults`: window, experiment and shadow results
alike), and the sink sees each of them as it closes. Its whole state can be snapshotted and restored
(:meth:`Pipeline.state`), which is what makes checkpointed exactly-once processing possible.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from monitor.ab.experiments import ExperimentResult, ExperimentSet
from monitor.ab.shadow import JOIN_OUTCOMES, ShadowResult, ShadowWindows
from monitor.config import Config
from monitor.ingest.events import DEFAULT_VERSION, REASONS, Event, InvalidEvent, decode_event
from monitor.ingest.features import base_features, entropies, event_rows
from monitor.ingest.reference import FeatureSet, Profile
from monitor.ingest.tokenizer import TokenizerFeaturizer
from monitor.results import BatchResults, WindowResult
from monitor.windowing.accumulator import CONFIDENCE_COL, BatchSlice, WindowAccumulator
from monitor.windowing.evaluate import StreamDetectors, window_result
from monitor.windowing.windows import NO_EVENTS_YET, closed_by_ms, is_late, watermark_before_ms, window_start_ms

__all__ = ["Pipeline", "Record", "PipelineStats", "Sink", "ALL_REASONS"]

# Rejected by the pipeline rather than by the event validator: needs the wall clock.
FUTURE_REASON = "future_timestamp"
ALL_REASONS = REASONS + (FUTURE_REASON,)


@dataclass(frozen=True, slots=True)
class Record:
    """One raw record from a source and where it came from (``file.jsonl:12``, ``topic/0@812``)."""

    value: bytes
    position: str = ""


class Sink(Protocol):
    """Every call the pipeline makes on its sink (sinks.prometheus.PrometheusSink implements them all)."""

    def observe_batch(self, model: str, version: str, *, classes: Counter, errors: int, latency_ms: np.ndarray,
                      confidence: np.ndarray, lengths: np.ndarray, last_ts_ms: int) -> None: ...
    def window_closed(self, result: WindowResult) -> None: ...
    def experiment_closed(self, result: ExperimentResult) -> None: ...
    def shadow_closed(self, result: ShadowResult) -> None: ...
    def count_records(self, consumed: int, valid: int) -> None: ...
    def count_invalid(self, reason: str, n: int = 1) -> None: ...
    def count_late(self, model: str, version: str, n: int) -> None: ...
    def set_open_windows(self, n: int) -> None: ...
    def count_shadow_joins(self, deltas: Mapping[str, int]) -> None: ...
    def set_shadow_pending(self, n: int) -> None: ...


class DeadLetter(Protocol):
    def write(self, raw: bytes, reason: str, detail: str, position: str) -> None: ...


@dataclass
class PipelineStats:
    lines: int = 0
    valid: int = 0
    invalid: Counter = field(default_factory=Counter)
    late: int = 0
    windows: int = 0

    def to_dict(self) -> dict:
        return {
            "lines": self.lines,
            "valid": self.valid,
            "invalid": sum(self.invalid.values()),
            "invalid_by_reason": dict(sorted(self.invalid.items())),
            "late": self.late,
            "windows": self.windows,
        }


class _Stream:
    """Window bookkeeping of one (model, version) stream."""

    __slots__ = ("model", "version", "max_ts_ms", "count", "open", "pending_late", "pending_invalid", "custom")

    def __init__(self, model: str, version: str, custom: tuple[str, ...]):
        self.model, self.version = model, version
        self.max_ts_ms = NO_EVENTS_YET
        self.count = 0  # valid events seen, for count windows
        self.open: dict[int, WindowAccumulator] = {}
        self.pending_late = 0
        self.pending_invalid = 0
        self.custom = custom


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
    ):
        self.config = config
        # Called with each closed window's result and its reservoir's confidences (NaN for error events),
        # e.g. for the label-free accuracy estimate; the result is not changed by it.
        self.on_window_confidences = on_window_confidences
        # Called with each batch's valid events before windowing (e.g. to keep a sample of recent texts).
        self.on_events = on_events
        self.tokenizer = tokenizer
        self.features = FeatureSet(tokenizer=tokenizer.info.to_dict() if tokenizer else None)
        self.profiles = dict(profiles or {})
        for model, profile in self.profiles.items():
            profile.check_compatible(self.features, origin=f"model {model}")
        self._detectors = {m: StreamDetectors(p, config.detect) for m, p in self.profiles.items()}
        self.sink = sink
        self.dead_letter = dead_letter
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.stats = PipelineStats()
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._rejected: Counter[tuple[str, str]] = Counter()
        w = config.window
        self._size_ms = max(1, int(round(w.size_seconds * 1000)))
        self._lateness_ms = int(round(w.lateness_seconds * 1000))
        self._future_ms = int(round(w.max_future_seconds * 1000))
        self._low = config.detect.low_confidence_threshold
        # A/B experiments and shadow joins (docs/experiments.md); their closed windows are returned with the
        # window results of the same call, so they become durable with the checkpoint that covers them.
        self.experiments = ExperimentSet(config) if config.experiments else None
        self.shadow = ShadowWindows(config.shadow, config.window) if config.shadow.enabled else None
        self._joins_reported: dict[str, int] = {}

    # -- public API ----------------------------------------------------------------------------------------
    def process(self, records: Sequence[Record]) -> BatchResults:
        """Validate and window one batch; return the results of the windows it closed."""
        events = self._decode(records)
        results: list[WindowResult] = []
        experiments: list[ExperimentResult] = []
        shadow: list[ShadowResult] = []
        if events and self.on_events is not None:
            self.on_events(events)
        if events and self.experiments is not None:
            experiments = self._experiments_closed(self.experiments.add_events(events))
        if events and self.shadow is not None:
            shadow = self._shadow_closed(self.shadow.add_events(events))
        if events:
            batch = base_features(events, self.features, self.tokenizer)
            by_stream: dict[tuple[str, str], list[int]] = {}
            for i, e in enumerate(events):
                by_stream.setdefault((e.model, e.version), []).append(i)
            for key in by_stream:
                self._stream(key)
        self._attribute_rejections()
        if events:
            for key, idx in by_stream.items():
                results.extend(self._add(key, events, idx, batch.matrix, batch.lengths))
        if self.sink is not None:
            self.sink.count_records(len(records), len(events))
            self.sink.set_open_windows(self.open_windows)
        return BatchResults(tuple(results), tuple(experiments), tuple(shadow))

    def flush(self) -> BatchResults:
        """Close every open window now (results marked ``partial``), e.g. at end of input or shutdown."""
        results = []
        for stream in self._streams.values():
            for start in sorted(stream.open):
                results.append(self._close(stream, start, partial=True))
        experiments = self._experiments_closed(self.experiments.flush()) if self.experiments is not None else []
        shadow = self._shadow_closed(self.shadow.flush()) if self.shadow is not None else []
        if self.sink is not None:
            self.sink.set_open_windows(0)
        return BatchResults(tuple(results), tuple(experiments), tuple(shadow))

    def _experiments_closed(self, results: list[ExperimentResult]) -> list[ExperimentResult]:
        if self.sink is not None:
            for r in results:
                self.sink.experiment_closed(r)
        return results

    def _shadow_closed(self, results: list[ShadowResult]) -> list[ShadowResult]:
        if self.sink is not None:
            for r in results:
                self.sink.shadow_closed(r)
        # Deltas, so that several partitions' pipelines add up and a restored joiner's counts are not re-sent.
        counters = self.shadow.joiner.counters()
        if self.sink is not None:
            self.sink.count_shadow_joins({k: counters[k] - self._joins_reported.get(k, 0) for k in JOIN_OUTCOMES})
            self.sink.set_shadow_pending(counters["pending"])
        self._joins_reported = counters
        return results

    @property
    def open_windows(self) -> int:
        """Open windows of the (model, version) streams (experiment and shadow windows are not counted)."""
        return sum(len(s.open) for s in self._streams.values())

    # -- validation ----------------------------------------------------------------------------------------
    def _decode(self, records: Sequence[Record]) -> list[Event]:
        events: list[Event] = []
        max_chars = self.config.validation.max_text_chars
        horizon = self._now_ms() + self._future_ms
        for rec in records:
            try:
                e = decode_event(rec.value, max_text_chars=max_chars)
            except InvalidEvent as exc:
                self._reject(rec, exc)
                continue
            if e.ts_ms > horizon:
                # One producer with a wrong clock must not close every window of its stream.
                self._reject(rec, InvalidEvent(FUTURE_REASON, "ts is further in the future than window.max_future_seconds", e.model, e.version))
                continue
            events.append(e)
        self.stats.lines += len(records)
        self.stats.valid += len(events)
        return events

    def _reject(self, rec: Record, exc: InvalidEvent) -> None:
        self.stats.invalid[exc.reason] += 1
        if self.sink is not None:
            self.sink.count_invalid(exc.reason)
        if self.dead_letter is not None:
            self.dead_letter.write(rec.value, exc.reason, exc.detail, rec.position)
        if exc.model is not None:
            self._rejected[(exc.model, exc.version or DEFAULT_VERSION)] += 1

    def _attribute_rejections(self) -> None:
        # After the batch's streams exist, so a stream's first batch keeps its own rejections; streams never
        # seen with a valid event are not created, so garbage model names cannot grow memory.
        for key, n in self._rejected.items():
            stream = self._streams.get(key)
            if stream is not None:
                stream.pending_invalid += n
        self._rejected.clear()

    # -- windowing -----------------------------------------------------------------------------------------
    def _stream(self, key: tuple[str, str]) -> _Stream:
        stream = self._streams.get(key)
        if stream is None:
            profile = self.profiles.get(key[0])
            stream = self._streams[key] = _Stream(key[0], key[1], profile.custom_features if profile else ())
        return stream

    def _add(self, key, events, idx, base, lengths) -> list[WindowResult]:
        stream = self._stream(key)
        evs = [events[i] for i in idx]
        ts = np.fromiter((e.ts_ms for e in evs), dtype=np.int64, count=len(evs))
        rows = event_rows(evs, base[idx], stream.custom)
        preds = [None if e.error is not None else e.prediction for e in evs]
        labels = [e.label for e in evs]
        entropy = entropies(evs)

        if self.sink is not None:
            self.sink.observe_batch(
                stream.model, stream.version,
                classes=Counter(preds), errors=sum(p is None for p in preds),
                latency_ms=rows[:, 0], confidence=rows[:, 1], lengths=lengths[idx], last_ts_ms=int(ts.max()),
            )  # fmt: skip

        if self.config.window.kind == "time":
            starts = window_start_ms(ts, self._size_ms)
            late = is_late(starts + self._size_ms, watermark_before_ms(ts, stream.max_ts_ms), self._lateness_ms)
            n_late = int(late.sum())
            if n_late:
                stream.pending_late += n_late
                self.stats.late += n_late
                if self.sink is not None:
                    self.sink.count_late(stream.model, stream.version, n_late)
            keys = starts
            keep = ~late if n_late else None
        else:
            keys = (stream.count + np.arange(len(evs), dtype=np.int64)) // self.config.window.events
            keep = None
            stream.count += len(evs)

        self._route(stream, keys, keep, ts, rows, preds, labels, entropy)
        stream.max_ts_ms = max(stream.max_ts_ms, int(ts.max()))
        return self._close_due(stream)

    def _route(self, stream, keys, keep, ts, rows, preds, labels, entropy) -> None:
        if keep is not None:
            sel = np.flatnonzero(keep)
            if sel.size == 0:
                return
            keys, ts, rows, entropy = keys[sel], ts[sel], rows[sel], entropy[sel]
            preds = [preds[i] for i in sel]
            labels = [labels[i] for i in sel]
        first, last = keys[0], keys[-1]
        if first == last and (keys.size < 3 or (keys == first).all()):
            groups = [(int(first), None)]  # the common case: the whole batch falls into one window
        else:
            uniq, inverse = np.unique(keys, return_inverse=True)
            groups = [(int(k), np.flatnonzero(inverse == j)) for j, k in enumerate(uniq)]
        for k, sel in groups:
            acc = stream.open.get(k)
            if acc is None:
                acc = stream.open[k] = self._new_window(stream, k)
            if sel is None:
                acc.add(BatchSlice(ts, rows, preds, labels, entropy, self._low))
            else:
                acc.add(BatchSlice(ts[sel], rows[sel], [preds[i] for i in sel], [labels[i] for i in sel], entropy[sel], self._low))

    def _new_window(self, stream: _Stream, key: int) -> WindowAccumulator:
        w = self.config.window
        if w.kind == "time":
            start, end, seq = key, key + self._size_ms, 0
        else:
            start, end, seq = 0, 0, key
        return WindowAccumulator(
            model=stream.model, version=stream.version, kind=w.kind, start_ms=start, end_ms=end, seq=seq,
            width=2 + len(self.features.base_names) + len(stream.custom),
            reservoir_size=w.reservoir_size, seed=w.seed,
        )  # fmt: skip

    def _close_due(self, stream: _Stream) -> list[WindowResult]:
        if self.config.window.kind == "time":
            due = [k for k, acc in stream.open.items() if closed_by_ms(acc.end_ms, stream.max_ts_ms, self._lateness_ms)]
        else:
            due = [k for k, acc in stream.open.items() if acc.events >= self.config.window.events]
        return [self._close(stream, k, partial=False) for k in sorted(due)]

    def _close(self, stream: _Stream, key: int, *, partial: bool) -> WindowResult:
        acc = stream.open.pop(key)
        result = window_result(
            acc,
            feature_names=self.features.base_names + stream.custom,
            detectors=self._detectors.get(stream.model),
            min_events=self.config.window.min_events,
            partial=partial,
            late=stream.pending_late,
            invalid=stream.pending_invalid,
        )
        stream.pending_late = stream.pending_invalid = 0
        if self.on_window_confidences is not None:
            self.on_window_confidences(result, acc.reservoir.rows[:, CONFIDENCE_COL])
        self.stats.windows += 1
        if self.sink is not None:
            self.sink.window_closed(result)
        return result

    # -- checkpoints ---------------------------------------------------------------------------------------
    def state(self) -> dict:
        """A snapshot of every stream's open windows and counters; :meth:`restore` puts it back exactly."""
        return {
            "streams": [
                {
                    "model": s.model, "version": s.version, "max_ts_ms": s.max_ts_ms, "count": s.count,
                    "pending_late": s.pending_late, "pending_invalid": s.pending_invalid,
                    "open": [acc.state() for acc in s.open.values()],
                }
                for s in self._streams.values()
            ],
            **({"experiments": self.experiments.state()} if self.experiments is not None else {}),
            **({"shadow": self.shadow.state()} if self.shadow is not None else {}),
        }  # fmt: skip

    def restore(self, state: dict) -> None:
        for s in state["streams"]:
            stream = self._stream((s["model"], s["version"]))
            stream.max_ts_ms, stream.count = s["max_ts_ms"], s["count"]
            stream.pending_late, stream.pending_invalid = s["pending_late"], s["pending_invalid"]
            for acc_state in s["open"]:
                acc = WindowAccumulator.from_state(acc_state)
                stream.open[acc.start_ms if acc.kind == "time" else acc.seq] = acc
        # A checkpoint from before experiments were configured has neither key: they start from here.
        if self.experiments is not None and "experiments" in state:
            self.experiments.restore(state["experiments"])
        if self.shadow is not None and "shadow" in state:
            self.shadow.restore(state["shadow"])
            self._joins_reported = self.shadow.joiner.counters()
