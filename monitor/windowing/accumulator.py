"""What one open window remembers: exact counts and sums, plus a bounded sample of per-event values."""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from monitor.windowing.evidence import EvidenceAccumulator, EvidenceSlice
from monitor.windowing.reservoir import Reservoir

__all__ = ["WindowAccumulator", "BatchSlice", "embedding_seed", "window_seed", "FIXED_POINT", "LATENCY_COL", "CONFIDENCE_COL", "FIRST_FEATURE_COL"]

# Reservoir columns: latency, confidence, then the stream's features in order.
LATENCY_COL, CONFIDENCE_COL, FIRST_FEATURE_COL = 0, 1, 2


@dataclass(slots=True)
class BatchSlice:
    """The events of one batch that fall into one window, as parallel arrays/lists."""

    ts_ms: np.ndarray
    rows: np.ndarray  # (k, 2 + n_features): latency_ms, confidence, features (NaN = missing)
    predictions: list  # class name, or None for error events
    labels: list  # label or None
    entropy: np.ndarray  # NaN where the event had no probabilities
    low_confidence_threshold: float
    evidence: EvidenceSlice | None = None  # the window's evidence inputs ([explain]; windowing/evidence.py)
    # ``Counter(predictions)`` when the caller has counted them already (the pipeline counts every stream
    # batch for its sink; a slice that is the whole batch reuses that count instead of a second pass). Read only.
    classes: Counter | None = None


# Sums of confidences and entropies are kept as integers in units of 2**-32: integer addition is exact and
# associative, so a window's mean does not depend on how its events were batched (float sums do, in the last
# bits), which exactly-once restarts rely on. Resolution 2.3e-10; int64 per batch cannot overflow below
# ~2e9 summed units of 1.0, far beyond any batch.
FIXED_POINT = float(2**32)


def fixed_sum(values: np.ndarray) -> int:
    return int(np.rint(values * FIXED_POINT).astype(np.int64).sum())


# "EMBEDDNG": the embedding sample's seed is the reservoir's XOR this, so the two samples draw differently
# while both derive from the window's identity alone.
_EMBEDDING_SALT = 0x454D_4245_4444_4E47


def embedding_seed(reservoir_seed: int) -> int:
    """The seed of a window's embedding sample, given its reservoir's."""
    return reservoir_seed ^ _EMBEDDING_SALT


def window_seed(seed: int, model: str, version: str, key: int, *, segment: str = "") -> int:
    """A 64-bit seed that depends only on the window's identity, so re-running a stream samples identically.

    A segment's windows draw their own samples; the segment-less stream ("") keeps the seeds it always had.
    """
    entropy = [seed, zlib.crc32(model.encode()), zlib.crc32(version.encode()), key & 0xFFFFFFFF, (key >> 32) & 0xFFFFFFFF]
    seq = np.random.SeedSequence(entropy + [zlib.crc32(segment.encode())] if segment else entropy)
    return int(seq.generate_state(1, np.uint64)[0])


# Fields later than the first checkpoints, with the value an older checkpoint's window had.
_ADDED = {"invalid": 0, "late": 0, "segment": ""}


class WindowAccumulator:
    """Running state of one window of one (model, version) stream."""

    __slots__ = (
        "model", "version", "kind", "start_ms", "end_ms", "seq", "first_ts_ms", "last_ts_ms",
        "events", "errors", "labelled", "correct", "class_counts",
        "confidence_n", "confidence_sum", "low_confidence_n", "entropy_n", "entropy_sum", "reservoir",
        "invalid", "late", "embeddings", "segment", "evidence",
    )  # fmt: skip
    _NESTED = ("reservoir", "class_counts", "embeddings", "evidence")

    def __init__(self, *, model: str, version: str, kind: str, start_ms: int, end_ms: int, seq: int,
                 width: int, reservoir_size: int, seed: int, embedding: tuple[int, int] = (0, 0), segment: str = ""):
        self.model, self.version, self.kind = model, version, kind
        self.segment = segment  # "" for the segment-less stream
        self.start_ms, self.end_ms, self.seq = start_ms, end_ms, seq
        self.first_ts_ms: int | None = None
        self.last_ts_ms: int | None = None
        self.events = self.errors = self.labelled = self.correct = 0
        self.class_counts: Counter[str] = Counter()
        self.confidence_n = self.low_confidence_n = self.entropy_n = 0
        self.confidence_sum = self.entropy_sum = 0  # fixed point, see FIXED_POINT
        # Rejected and late records of the stream read while this was its open window (docs/results.md):
        # kept here, not beside the stream, so the count depends on the record sequence, not on batching.
        self.invalid = self.late = 0
        key = start_ms if kind == "time" else seq
        self.reservoir = Reservoir(reservoir_size, width, window_seed(seed, model, version, key, segment=segment))
        # Embedding drift: a sample of `embedding[1]` projected embeddings (`embedding[0]` floats each) of the
        # events that carry one, seeded from the window's identity like the reservoir (its seed also draws
        # the MMD's permutations), so small in the checkpoint and independent of batching.
        components, sample = embedding
        self.embeddings = (Reservoir(sample, components, embedding_seed(window_seed(seed, model, version, key, segment=segment)))
                           if components else None)
        # The evidence (docs/evidence.md): made with the window's first events, None while [explain] is off.
        self.evidence: EvidenceAccumulator | None = None

    def add(self, s: BatchSlice) -> None:
        k = s.ts_ms.size
        if k == 0:
            return
        self.events += k
        lo, hi = int(s.ts_ms.min()), int(s.ts_ms.max())
        self.first_ts_ms = lo if self.first_ts_ms is None else min(self.first_ts_ms, lo)
        self.last_ts_ms = hi if self.last_ts_ms is None else max(self.last_ts_ms, hi)
        counts = s.classes if s.classes is not None else Counter(s.predictions)
        class_counts = self.class_counts
        for cls, n in counts.items():  # (in the order Counter.update would insert them: checkpoints keep it)
            if cls is None:
                self.errors += n
            else:
                class_counts[cls] += n
        if s.labels.count(None) < k:  # (a C-speed scan: most batches carry no label at all)
            for p, label in zip(s.predictions, s.labels):
                if label is not None and p is not None:
                    self.labelled += 1
                    self.correct += p == label
        conf = s.rows[:, CONFIDENCE_COL]
        has_conf = ~np.isnan(conf)
        self.confidence_n += int(has_conf.sum())
        self.confidence_sum += fixed_sum(conf[has_conf])
        self.low_confidence_n += int((conf[has_conf] < s.low_confidence_threshold).sum())
        has_entropy = ~np.isnan(s.entropy)
        self.entropy_n += int(has_entropy.sum())
        self.entropy_sum += fixed_sum(s.entropy[has_entropy])
        if self.embeddings is None or s.rows.shape[1] == self.reservoir.width:
            # (the second: the encoder's path, whose texts fill the embedding sample: windowing/text_embeddings)
            self.reservoir.add(s.rows)
        else:
            width = self.reservoir.width
            self.reservoir.add(s.rows[:, :width])
            projected = s.rows[:, width:]
            self.embeddings.add(projected[~np.isnan(projected[:, 0])])
        if s.evidence is not None:
            if self.evidence is None:
                self.evidence = EvidenceAccumulator.for_plan(s.evidence.plan)
            self.evidence.add(s.evidence)

    # -- checkpoints ---------------------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything needed to resume this window exactly (used by the checkpoint store)."""
        out = {name: getattr(self, name) for name in self.__slots__ if name not in self._NESTED}
        out["class_counts"] = dict(self.class_counts)
        out["reservoir"] = self.reservoir.state()
        out["embeddings"] = self.embeddings.state() if self.embeddings is not None else None
        out["evidence"] = self.evidence.state() if self.evidence is not None else None
        return out

    @classmethod
    def from_state(cls, state: dict) -> "WindowAccumulator":
        acc = cls.__new__(cls)
        for name in cls.__slots__:
            if name not in cls._NESTED:
                # invalid/late/segment: absent from checkpoints written before they were counted (kept) here.
                setattr(acc, name, state[name] if name in state or name not in _ADDED else _ADDED[name])
        acc.class_counts = Counter(state["class_counts"])
        acc.reservoir = Reservoir.from_state(state["reservoir"])
        embeddings = state.get("embeddings")  # absent from checkpoints written before embedding drift
        acc.embeddings = Reservoir.from_state(embeddings) if embeddings is not None else None
        evidence = state.get("evidence")  # absent from checkpoints written before the evidence
        acc.evidence = EvidenceAccumulator.from_state(evidence) if evidence is not None else None
        return acc
