"""The ``reeval_runs`` table: one row per finished re-evaluation run, successful or not (docs/reeval.md).

The one place the store reads a re-evaluation result: :meth:`ReevalRuns.save` copies its accuracy into the
indexed column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from sinks.sql import schema as tables
from sinks.sql.rows import TableFamily, check_name, float_or_none

__all__ = ["REEVAL_OUTCOMES", "ReevalRun", "ReevalRuns"]

REEVAL_OUTCOMES = ("success", "failure", "timeout")


@dataclass(frozen=True, slots=True)
class ReevalRun:
    """A stored re-evaluation run (table ``reeval_runs``); ``result`` is ``None`` for a failed run."""

    id: int
    model: str
    version: str
    dataset: str
    started_at_ms: int
    duration_seconds: float | None
    trigger: str
    outcome: str
    accuracy: float | None
    error: str | None
    result: dict | None


class ReevalRuns(TableFamily):
    """Writes and reads ``reeval_runs``."""

    def save(
        self,
        *,
        model: str,
        version: str,
        dataset: str,
        started_at_ms: int,
        trigger: str,
        outcome: str,
        result: Mapping | None = None,
        error: str | None = None,
        duration_seconds: float | None = None,
    ) -> int:
        """Store one finished re-evaluation run and return its id (increasing with every save).

        ``result`` is the run's JSON document (``ReevalResult.to_dict()``); its ``accuracy`` is copied into
        the indexed column. ``outcome`` is one of :data:`REEVAL_OUTCOMES`.
        """
        for what, value in (("model", model), ("version", version), ("dataset", dataset), ("trigger", trigger)):
            check_name(what, value)
        if outcome not in REEVAL_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(REEVAL_OUTCOMES)}, got {outcome!r}")
        if isinstance(started_at_ms, bool) or not isinstance(started_at_ms, int):
            raise TypeError("started_at_ms must be an integer of epoch milliseconds")
        if result is not None and not isinstance(result, Mapping):
            raise TypeError("result must be a dict or None")
        row = {
            "model": model, "version": version, "dataset": dataset, "started_at_ms": started_at_ms,
            "duration_seconds": float_or_none(duration_seconds), "trigger": trigger, "outcome": outcome,
            "accuracy": float_or_none(result.get("accuracy")) if result is not None else None,
            "error": error, "result": dict(result) if result is not None else None,
        }
        with self._connect(write=True) as conn:
            return int(conn.execute(sa.insert(tables.reeval_runs).values(**row)).inserted_primary_key[0])

    def runs(
        self,
        model: str | None = None,
        *,
        version: str | None = None,
        dataset: str | None = None,
        outcome: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[ReevalRun]:
        """Return stored re-evaluation runs, oldest first (``newest_first``: newest first), filtered by the
        given columns; ``limit`` keeps the first ``limit`` of that order.

        ``runs(model, dataset=d, outcome="success", limit=1)`` is the default baseline of a model.
        """
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        t = tables.reeval_runs.c
        query = sa.select(tables.reeval_runs)
        for column, value in (("model", model), ("version", version), ("dataset", dataset), ("outcome", outcome)):
            if value is not None:
                query = query.where(t[column] == value)
        order = (t.started_at_ms, t.id)
        query = query.order_by(*(c.desc() for c in order) if newest_first else order)
        if limit is not None:
            query = query.limit(limit)
        with self._connect(write=False) as conn:
            rows = conn.execute(query).all()
        return [
            ReevalRun(r.id, r.model, r.version, r.dataset, r.started_at_ms, r.duration_seconds, r.trigger,
                      r.outcome, r.accuracy, r.error, r.result)
            for r in rows
        ]  # fmt: skip
