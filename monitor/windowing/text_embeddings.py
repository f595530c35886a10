"""Embedding drift with the encoder nlpmon runs itself: each window's seeded sample of texts, embedded off the
hot path.

Which texts a window keeps is decided at arrival, by the same seeded draws as for precomputed embeddings
(:meth:`Reservoir.add_slots <monitor.windowing.reservoir.Reservoir.add_slots>`): the choice depends on the
stream's record sequence alone, never on batching or on how fast the encoder is. A kept text becomes a
:class:`PendingText` bound to its slot. At the end of each batch the pipeline hands the new pending texts to
the embedder (a worker thread: ``monitor/runtime/embedding_worker.py``) as one job and goes on consuming. A
text that a later one displaces from its slot is marked dead, and the worker skips it if it has not started
yet (wasted work only, never a different result).

The barrier, :meth:`TextEmbeddings.settle`, waits for every job and writes each still-current text's projected
embedding into its slot. The pipeline calls it before a window is tested and before its state is snapshotted
(``Pipeline.state()``), so a checkpoint holds projected floats and never a text; a restart re-reads the texts
after the checkpoint and samples them again identically. Since the encoder embeds a text to the same bits
whatever else is in its batch (``monitor/onnx/encoder.py``) and the projection is row-independent
(``PCAProjection.project_rows``), the window's sample does not depend on which texts shared a job either.

A text the encoder fails on keeps NaN in its slot (counted in :attr:`TextEmbeddings.errors`): the window's
embedding test is then skipped with a reason (``windowing/evaluate.py``), and the daemon goes on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from detectors.embedding import PCAProjection
from monitor.windowing.accumulator import WindowAccumulator

__all__ = ["PendingText", "Embedder", "EmbedJob", "TextEmbeddings", "ENCODER_ERROR"]

# drift.embedding_skipped of a window whose sample holds a text the encoder failed on (docs/results.md).
ENCODER_ERROR = "encoder_error"


class PendingText:
    """One sampled text waiting for its embedding. ``alive`` turns False (never back) when a later text takes
    its slot; the embedder sets ``vector`` (float32, ``(dim,)``) or ``failed``."""

    __slots__ = ("text", "acc", "slot", "alive", "vector", "failed")

    def __init__(self, text: str, acc: WindowAccumulator, slot: int):
        self.text, self.acc, self.slot = text, acc, slot
        self.alive = True
        self.vector: np.ndarray | None = None
        self.failed = False


class EmbedJob(Protocol):
    def result(self, timeout: float | None = None) -> object: ...

    def done(self) -> bool: ...


class Embedder(Protocol):
    """Embeds the alive texts of a list of :class:`PendingText` asynchronously (sets ``vector``/``failed``)."""

    identity: dict

    def submit(self, texts: list[PendingText]) -> EmbedJob: ...


class TextEmbeddings:
    """The pending sampled texts of one pipeline's windows and the embedder's jobs for them.

    ``projections`` holds the profile projection of each model whose embeddings come from the encoder;
    ``max_pending`` bounds the texts submitted and not yet applied (beyond it, :meth:`submit` waits for the
    oldest job: backpressure instead of unbounded memory).
    """

    def __init__(self, embedder: Embedder, projections: Mapping[str, PCAProjection], *, max_pending: int):
        self.embedder = embedder
        self.projections = dict(projections)
        self.max_pending = max_pending
        self._current: dict[tuple[int, int], PendingText] = {}  # (id(acc), slot) -> its newest text
        self._unsubmitted: list[PendingText] = []
        self._jobs: list[tuple[EmbedJob, list[PendingText]]] = []
        self._submitted = 0
        self.errors = 0  # texts the encoder failed on
        self.embedded = 0  # texts whose embedding went into a window
        self.barriers = 0
        self.wait_seconds = 0.0  # time the barriers waited for the worker
        self.last_wait = 0.0  # ... the last one

    def offer(self, acc: WindowAccumulator, texts: list) -> None:
        """Offer the texts of one window's slice (``None``: an event without text, not sampled)."""
        present = [t for t in texts if t is not None]
        if not present or acc.embeddings is None:
            return
        slots = acc.embeddings.add_slots(len(present))
        for text, slot in zip(present, slots.tolist()):
            if slot < 0:
                continue
            key = (id(acc), slot)
            old = self._current.get(key)
            if old is not None:
                old.alive = False
            entry = self._current[key] = PendingText(text, acc, slot)
            self._unsubmitted.append(entry)

    def submit(self) -> None:
        """Hand the texts offered since the last call to the embedder; apply the jobs already done."""
        todo = [e for e in self._unsubmitted if e.alive]
        self._unsubmitted = []
        if todo:
            self._jobs.append((self.embedder.submit(todo), todo))
            self._submitted += len(todo)
        while self._jobs and (self._jobs[0][0].done() or self._submitted > self.max_pending):
            self._apply_oldest()

    def settle(self) -> float:
        """The barrier: wait for every pending text and write the embeddings into their windows; return the wait."""
        if not self._unsubmitted and not self._jobs:
            return 0.0
        started = time.perf_counter()
        self.submit()
        while self._jobs:
            self._apply_oldest()
        waited = time.perf_counter() - started
        self.barriers += 1
        self.wait_seconds += waited
        self.last_wait = waited
        return waited

    @property
    def pending(self) -> int:
        """Sampled texts not yet written into their window."""
        return len(self._current)

    def _apply_oldest(self) -> None:
        job, entries = self._jobs.pop(0)
        self._submitted -= len(entries)
        try:
            job.result()
        except Exception:  # the worker itself broke: every text of the job counts as failed
            for e in entries:
                e.failed = e.failed or e.vector is None
        for e in entries:
            if not e.alive:
                continue
            del self._current[(id(e.acc), e.slot)]
            projection = self.projections.get(e.acc.model)
            vector = e.vector
            if e.failed or vector is None or projection is None or vector.shape != (projection.dim,):
                self.errors += 1  # the slot keeps NaN: the window's embedding test is skipped
                continue
            e.acc.embeddings.set_row(e.slot, projection.project_rows(vector[None, :].astype(np.float64))[0])
            self.embedded += 1
