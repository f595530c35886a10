"""Retention: deleting stored results older than a cut-off, in small batches (docs/storage.md, *Retention*).

Each call of :meth:`Retention.prune_batch` deletes at most ``batch_rows`` rows of each table family, every
family in its own short write transaction, so a prune never holds the database long enough to delay the
daemon's checkpoint, and a prune killed at any point leaves whole windows: a window's ``drift_events`` are
deleted in the transaction that deletes its ``window_results`` row. Repeating the call until it deletes
nothing finishes the job (:meth:`Retention.prune`).

Never deleted, whatever their age: ``checkpoints`` (a restart resumes from them), ``reference_profiles`` (the
active one is the reference; the others are a few rows kept for re-activation), the oldest and the newest
successful re-evaluation run of each model and data set (the default baseline and the calibration table), and
the newest row of each experiment (its current state, cumulative since it started).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sqlalchemy as sa

from sinks.sql import schema as tables
from sinks.sql.rows import TableFamily

__all__ = ["DAY_MS", "RetentionPolicy", "Retention", "PRUNED_TABLES"]

DAY_MS = 86_400_000

# The tables a prune deletes from, in the order it reports them.
PRUNED_TABLES = ("window_results", "drift_events", "window_evidence", "experiment_results", "shadow_results",
                 "label_results", "reeval_runs")


@dataclass(frozen=True)
class RetentionPolicy:
    """How many days each family keeps its rows; ``0`` keeps them forever.

    ``results_days`` covers window results with their drift events, experiment and shadow results;
    ``labels_days`` label results; ``reeval_days`` re-evaluation runs.
    """

    results_days: float = 0.0
    labels_days: float = 0.0
    reeval_days: float = 0.0

    def __post_init__(self):
        for name in ("results_days", "labels_days", "reeval_days"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 keeps rows forever)")

    @property
    def active(self) -> bool:
        """Whether any family has a limit."""
        return any((self.results_days, self.labels_days, self.reeval_days))

    def cutoffs_ms(self, now_ms: int) -> dict[str, int | None]:
        """``{table: epoch ms}``: rows starting before it are due; ``None`` for a table kept forever."""
        def before(days: float) -> int | None:
            return int(now_ms - days * DAY_MS) if days else None

        results = before(self.results_days)
        return {"window_results": results, "drift_events": results, "window_evidence": results, "experiment_results": results,
                "shadow_results": results, "label_results": before(self.labels_days),
                "reeval_runs": before(self.reeval_days)}


class Retention(TableFamily):
    """Deletes rows older than a :class:`RetentionPolicy`, a bounded batch per transaction."""

    def prune_batch(self, policy: RetentionPolicy, *, now_ms: int, batch_rows: int = 500) -> dict[str, int]:
        """Delete at most ``batch_rows`` due rows of each family (each family in its own transaction).

        Return ``{table: rows deleted}`` for every table of :data:`PRUNED_TABLES`; all zero means nothing
        is due any more.
        """
        if batch_rows < 1:
            raise ValueError("batch_rows must be >= 1")
        cut = policy.cutoffs_ms(now_ms)
        deleted = dict.fromkeys(PRUNED_TABLES, 0)
        if cut["window_results"] is not None:
            with self._connect(write=True) as conn:
                deleted.update(_prune_windows(conn, cut["window_results"], batch_rows))
            with self._connect(write=True) as conn:
                deleted["experiment_results"] = _prune_keyed(
                    conn, tables.experiment_results, tables.EXPERIMENT_KEY, cutoff_ms=cut["experiment_results"],
                    limit=batch_rows, keep_newest=True)
            with self._connect(write=True) as conn:
                deleted["shadow_results"] = _prune_keyed(
                    conn, tables.shadow_results, tables.SHADOW_KEY, cutoff_ms=cut["shadow_results"], limit=batch_rows)
        if cut["label_results"] is not None:
            with self._connect(write=True) as conn:
                deleted["label_results"] = _prune_keyed(
                    conn, tables.label_results, tables.LABELS_KEY, cutoff_ms=cut["label_results"], limit=batch_rows)
        if cut["reeval_runs"] is not None:
            with self._connect(write=True) as conn:
                deleted["reeval_runs"] = _prune_reeval(conn, cut["reeval_runs"], batch_rows)
        return deleted

    def prune(
        self, policy: RetentionPolicy, *, now_ms: int, batch_rows: int = 500,
        on_batch: Callable[[dict[str, int]], None] | None = None,
    ) -> dict[str, int]:
        """Run :meth:`prune_batch` until nothing is due; return the totals. ``on_batch`` sees each batch's counts."""
        total = dict.fromkeys(PRUNED_TABLES, 0)
        while True:
            batch = self.prune_batch(policy, now_ms=now_ms, batch_rows=batch_rows)
            if not any(batch.values()):
                return total
            for table, n in batch.items():
                total[table] += n
            if on_batch is not None:
                on_batch(batch)


# -- the deletes -----------------------------------------------------------------------------------------------

def _groups(conn: sa.Connection, column: sa.Column) -> list:
    # Each table's index leads with this column: a per-group range scan finds the oldest rows without
    # reading the whole table.
    return list(conn.execute(sa.select(column).distinct()).scalars())


def _due_keys(conn, table: sa.Table, key: tuple[str, ...], *, cutoff_ms: int, limit: int,
              keep_newest: bool) -> Iterator[dict]:
    """Yield the keys of up to ``limit`` rows of ``table`` starting before ``cutoff_ms``, oldest first per group."""
    group, start = table.c[key[0]], table.c["window_start_ms"]
    left = limit
    for value in _groups(conn, group):
        cut = cutoff_ms
        if keep_newest:  # the newest row of the group stays, however old
            newest = conn.execute(sa.select(sa.func.max(start)).where(group == value)).scalar()
            cut = min(cut, newest)
        query = (sa.select(*(table.c[k] for k in key)).where(group == value, start < cut)
                 .order_by(start).limit(left))
        rows = conn.execute(query).mappings().all()
        yield from (dict(r) for r in rows)
        left -= len(rows)
        if left <= 0:
            return


def _delete_keys(conn: sa.Connection, table: sa.Table, key: tuple[str, ...], keys: list[dict]) -> int:
    if not keys:
        return 0
    stmt = sa.delete(table).where(*(table.c[k] == sa.bindparam(f"k_{k}") for k in key))
    result = conn.execute(stmt, [{f"k_{k}": row[k] for k in key} for row in keys])
    return max(result.rowcount, 0)


def _prune_windows(conn: sa.Connection, cutoff_ms: int, limit: int) -> dict[str, int]:
    """Delete up to ``limit`` due windows with their drift events and evidence, in the caller's one transaction."""
    keys = list(_due_keys(conn, tables.window_results, tables.WINDOW_KEY, cutoff_ms=cutoff_ms, limit=limit,
                          keep_newest=False))
    # A window's drift_events and evidence first: they are keyed by the window's key.
    events = _delete_keys(conn, tables.drift_events, tables.WINDOW_KEY, keys)
    evidence = _delete_keys(conn, tables.window_evidence, tables.WINDOW_KEY, keys)
    return {"drift_events": events, "window_evidence": evidence,
            "window_results": _delete_keys(conn, tables.window_results, tables.WINDOW_KEY, keys)}


def _prune_keyed(conn, table: sa.Table, key: tuple[str, ...], *, cutoff_ms: int, limit: int,
                 keep_newest: bool = False) -> int:
    keys = list(_due_keys(conn, table, key, cutoff_ms=cutoff_ms, limit=limit, keep_newest=keep_newest))
    return _delete_keys(conn, table, key, keys)


def _prune_reeval(conn: sa.Connection, cutoff_ms: int, limit: int) -> int:
    """Delete up to ``limit`` runs started before ``cutoff_ms``, but never a baseline or calibration run."""
    t = tables.reeval_runs
    success = sa.select(t.c.id, t.c.model, t.c.dataset, t.c.started_at_ms).where(t.c.outcome == "success")
    kept: dict[tuple, list] = {}
    for run in conn.execute(success.where(t.c.started_at_ms < cutoff_ms)):
        kept.setdefault((run.model, run.dataset), []).append(run)
    protected = set()
    for model, dataset in kept:
        # The oldest and the newest successful run of (model, dataset), over every run, not only the old ones.
        order = (t.c.started_at_ms, t.c.id)
        same = success.where(t.c.model == model, t.c.dataset == dataset)
        protected.add(conn.execute(same.order_by(*order).limit(1)).first().id)
        protected.add(conn.execute(same.order_by(*(c.desc() for c in order)).limit(1)).first().id)
    query = sa.select(t.c.id).where(t.c.started_at_ms < cutoff_ms).order_by(t.c.started_at_ms, t.c.id)
    if protected:
        query = query.where(t.c.id.not_in(protected))
    ids = list(conn.execute(query.limit(limit)).scalars())
    if not ids:
        return 0
    return max(conn.execute(sa.delete(t).where(t.c.id.in_(ids))).rowcount, 0)
