"""The ``label_results`` table (docs/storage.md): rows from :class:`~monitor.results.LabelsResult`, and reads.

The store's commit writes these rows in its one transaction; a line source writes them in its own
(:func:`upsert_label_results` with its connection), and :func:`label_results` reads them back.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from monitor.results import LabelsResult
from sinks.sql import schema as tables
from sinks.sql.engine import upsert
from sinks.sql.rows import TableFamily, check_name, number_or_none, to_ms

__all__ = ["LabelResults", "label_rows", "upsert_label_results", "label_results"]


def label_rows(results: Iterable[LabelsResult]) -> list[dict]:
    """Rows of ``label_results``: columns read from the result's fields, ``result`` its ``to_dict()``."""
    rows = []
    for r in results:
        check_name("a labels result's model", r.model)
        check_name("a labels result's version", r.version)
        rows.append({"model": r.model, "version": r.version, "window_start_ms": r.window_start_ms,
                     "window_end_ms": r.window_end_ms, "partial": r.partial, "predictions": r.predictions,
                     "labelled": r.labelled, "accuracy": number_or_none(r.accuracy),
                     "estimated_accuracy": number_or_none(r.estimated_accuracy), "result": r.to_dict()})
    return rows


class LabelResults(TableFamily):
    """Writes and reads ``label_results``."""

    rows = staticmethod(label_rows)

    @staticmethod
    def write(conn: sa.Connection, rows: list[dict]) -> None:
        """Insert or replace labels rows (from :meth:`rows`) in ``conn``, keyed by stream and window start."""
        upsert(conn, tables.label_results, rows, tables.LABELS_KEY)

    def results(
        self, model: str, version: str | None = None, *, since: datetime | str | int | None = None,
        limit: int | None = None,
    ) -> list[dict]:
        """Stored labels results of ``model`` (and ``version``), oldest window first; ``limit`` keeps the newest.

        ``since`` keeps windows starting at or after it, read as in :meth:`SqlStore.history`.
        """
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        t = tables.label_results.c
        where = t.model == model if version is None else sa.and_(t.model == model, t.version == version)
        if since is not None:
            where = sa.and_(where, t.window_start_ms >= to_ms(since, "since"))
        # Newest first, so that `limit` keeps the newest; turned around below.
        query = sa.select(t.result).where(where).order_by(t.window_start_ms.desc(), t.version.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._connect(write=False) as conn:
            docs = [r.result for r in conn.execute(query)]
        docs.reverse()
        return docs


def upsert_label_results(conn: sa.Connection, results: Iterable[LabelsResult]) -> None:
    """Insert or replace labels results inside the caller's transaction, keyed by stream and window start."""
    LabelResults.write(conn, label_rows(results))


def label_results(
    store, model: str, version: str | None = None, *, since: datetime | str | int | None = None,
    limit: int | None = None,
) -> list[dict]:
    """Stored labels results of ``model`` in ``store`` (a ``SqlStore``), as :meth:`LabelResults.results`."""
    return store.labels.results(model, version, since=since, limit=limit)
