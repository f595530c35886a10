"""Retention in the daemon: one bounded delete batch at most every ``store.prune_interval_seconds``, on a thread.

The batch runs off the checkpoint's path: on its own thread, each table family in its own short transaction
(:meth:`sinks.sql.SqlStore.prune_batch`), so the consume loop never waits for it and a checkpoint waits at
most for one batch's write lock on SQLite (PostgreSQL: not at all, the rows differ). A failed batch is logged
and retried at the next interval; it never stops the daemon. docs/storage.md, *Retention*.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from monitor.config import StoreConfig
from monitor.logs import log_event
from sinks.sql import RetentionPolicy, SqlStore, StoreUnavailable

__all__ = ["Pruner", "policy_of"]


def policy_of(config: StoreConfig) -> RetentionPolicy:
    """The retention limits of the ``[store]`` section."""
    return RetentionPolicy(results_days=config.retention_days, labels_days=config.labels_retention_days,
                           reeval_days=config.reeval_retention_days)


class Pruner:
    """Deletes expired rows of a store in bounded batches, one per interval, until closed (a context manager)."""

    def __init__(self, store: SqlStore, config: StoreConfig, *,
                 wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000):
        self.store, self.policy = store, policy_of(config)
        self.interval_s, self.batch_rows = config.prune_interval_seconds, config.prune_batch_rows
        self._wall_ms = wall_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Pruner:
        if self.policy.active:  # no retention configured: no thread at all
            self._thread = threading.Thread(target=self._loop, name="nlpmon-prune", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def run_once(self) -> dict[str, int]:
        """Delete one batch of expired rows; give SQLite's freed pages back when any were deleted."""
        deleted = self.store.prune_batch(self.policy, now_ms=self._wall_ms(), batch_rows=self.batch_rows)
        if any(deleted.values()):
            self.store.release_space()
            log_event(logging.INFO, "pruned expired rows", **{t: n for t, n in deleted.items() if n})
        return deleted

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except StoreUnavailable as exc:
                log_event(logging.WARNING, "prune skipped: store unavailable", error=str(exc))
            except Exception as exc:  # a prune must never stop the daemon; the next interval tries again
                log_event(logging.ERROR, "prune failed", error=f"{type(exc).__name__}: {exc}")
