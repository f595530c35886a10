"""The ``label_results`` table (docs/storage.md): rows from :class:`~monitor.results.LabelsResult`, and reads.

Kept beside :mod:`sinks.sql` rather than in it: the store's commit writes these rows in its one transaction
(:func:`upsert_label_results` with its connection), and :func:`label_results` reads them back.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from detectors.base import finite_or_none
from monitor.results import LabelsResult
from sinks import sql_schema as tables
from sinks.sql_engine import upsert
from sinks.sql_rows import check_name

__all__ = ["label_rows", "upsert_label_results", "label_results"]


def label_rows(results: Iterable[LabelsResult]) -> list[dict]:
    """Rows of ``label_results``: columns read from the result's fields, ``result`` its ``to_dict()``."""
    rows = []
    for r in results:
        check_name("a labels result's model", r.model)
        check_name("a labels result's version", r.version)
        num = lambda x: None if x is None else finite_or_none(x)  # noqa: E731
        rows.append({"model": r.model, "version": r.version, "window_start_ms": r.window_start_ms,
                     "window_end_ms": r.window_end_ms, "partial": r.partial, "predictions": r.predictions,
                     "labelled": r.labelled, "accuracy": num(r.accuracy),
                     "estimated_accuracy": num(r.estimated_accuracy), "result": r.to_dict()})
    return rows


def upsert_label_results(conn: sa.Connection, results: Iterable[LabelsResult]) -> None:
    """Insert or replace labels results inside the caller's transaction, keyed by stream and window start."""
    upsert(conn, tables.label_results, label_rows(results), tables.LABELS_KEY)


def label_results(store, model: str, version: str | None = None, *, limit: int | None = None) -> list[dict]:
    """Stored labels results of ``model`` (and ``version``), oldest window first; ``limit`` keeps the newest."""
    t = tables.label_results.c
    where = t.model == model if version is None else sa.and_(t.model == model, t.version == version)
    query = sa.select(t.result).where(where).order_by(t.window_start_ms.desc(), t.version)
    if limit is not None:
        query = query.limit(limit)
    with store.transaction() as conn:
        docs = [r.result for r in conn.execute(query)]
    docs.reverse()
    return docs
