"""The worker thread that runs the ``[embedding]`` encoder on the windows' sampled texts, off the hot path.

One worker per daemon, shared by its pipelines (one per Kafka partition): jobs run one at a time, in the order
submitted, on a single thread, with the ONNX session's own intra-op threads (``embedding.threads``). The
pipeline waits for them only at its barriers (``monitor/windowing/text_embeddings.py``). A text or batch the
encoder fails on never raises out of here: the batch is retried text by text, and each text that still fails
is marked failed (its window skips the embedding test); only the exception's type is logged, since its
message may quote the input.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from monitor.config import Config
from monitor.logs import log_event
from monitor.windowing.text_embeddings import PendingText

__all__ = ["EmbeddingWorker", "build_embedding_worker", "open_embedding_worker", "set_embedding_gauges", "PROBE_TEXTS"]

# Embedded once at start: fixes the output's pooling and dimension when the graph leaves them symbolic
# (the profile check compares them), and checks batch independence on this model (a warning if not).
PROBE_TEXTS = ("nlpmon start probe", "a second probe text, longer than the first", "nlpmon start probe")


class EmbeddingWorker:
    """Run ``encoder.embed`` for :class:`PendingText` jobs on one background thread."""

    def __init__(self, encoder, *, components: int, whiten: bool):
        self.encoder = encoder
        self.components, self.whiten = components, whiten
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlpmon-embed")
        self.texts = 0  # texts embedded (alive when their job started)
        self.skipped = 0  # texts displaced from their slot before their job started
        self.failures = 0  # texts the encoder failed on
        # Called (on the worker thread) after each encoder call: the daemon's heartbeat, so a loop waiting for
        # the worker at a barrier counts as alive while the worker makes progress (monitor/runtime/heartbeat.py).
        self.on_progress: Callable[[], None] = lambda: None
        encoder.embed(list(PROBE_TEXTS))
        if not encoder.batch_independent(list(PROBE_TEXTS)):
            log_event(logging.WARNING, "the embedding encoder's output depends on batch composition; results "
                      "may differ between a run and its restart", model=encoder.path.name)  # fmt: skip
        self.identity = encoder.info()

    def submit(self, texts: list[PendingText]) -> Future:
        """Embed the texts that are still alive when the job starts (sets their ``vector`` or ``failed``)."""
        return self._pool.submit(self._run, texts)

    def _run(self, texts: list[PendingText]) -> None:
        todo = [t for t in texts if t.alive]
        self.skipped += len(texts) - len(todo)
        if not todo:
            return
        try:
            vectors = self.encoder.embed([t.text for t in todo])
        except Exception:
            vectors = None
        self.on_progress()
        if vectors is not None:
            for t, v in zip(todo, vectors):
                t.vector = v
            self.texts += len(todo)
            return
        for t in todo:  # isolate the text(s) the encoder fails on; the others still count
            try:
                t.vector = self.encoder.embed([t.text])[0]
                self.texts += 1
                self.on_progress()
            except Exception as exc:
                t.failed = True
                self.failures += 1
                log_event(logging.ERROR, "encoder failed on a sampled text; its window skips the embedding test",
                          error=type(exc).__name__)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def build_embedding_worker(config: Config) -> EmbeddingWorker | None:
    """The worker for ``[embedding] model`` (None without one); raises ModelError/TokenizerError on a bad setup."""
    e = config.embedding
    if not e.model:
        return None
    from monitor.onnx.encoder import OnnxEncoder

    encoder = OnnxEncoder(e.model, config.tokenizer.path, output=e.output or None, provider=e.provider,
                          batch_size=e.batch_size, max_length=config.tokenizer.max_length or None, intra_op_threads=e.threads)
    worker = EmbeddingWorker(encoder, components=e.components, whiten=e.whiten)
    log_event(logging.INFO, "embedding encoder loaded", model=encoder.path.name, output=encoder.output_name,
              provider=encoder.provider, pooling=encoder.pooling, dim=encoder.dim)
    return worker


def open_embedding_worker(config: Config, stack: contextlib.ExitStack) -> EmbeddingWorker | None:
    """:func:`build_embedding_worker`, closed by ``stack``."""
    worker = build_embedding_worker(config)
    if worker is not None:
        stack.callback(worker.close)
    return worker


def set_embedding_gauges(sink, worker: EmbeddingWorker | None, pipelines) -> None:
    """The encoder's daemon gauges (docs/metrics.md) from the worker and the pipelines' text samples."""
    if worker is None:
        return
    samples = [p.texts for p in pipelines if p.texts is not None]
    sink.set_gauge("nlpmon_embedding_pending_texts", "Sampled texts waiting for the [embedding] encoder.",
                   float(sum(t.pending for t in samples)))
    sink.set_counter("nlpmon_embedding_encoder_failures", "Sampled texts the [embedding] encoder failed on.",
                   float(worker.failures))
    sink.set_gauge("nlpmon_embedding_barrier_seconds", "Longest wait of the pipelines' last embedding barrier.",
                   max((t.last_wait for t in samples), default=0.0))
