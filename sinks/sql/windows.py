"""The window tables of the SQL store: ``window_results`` and their ``drift_events`` (docs/storage.md)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

import sqlalchemy as sa

from monitor.results import DriftVerdicts, WindowResult
from sinks.sql import schema as tables
from sinks.sql.engine import upsert
from sinks.sql.rows import TableFamily, check_name, number_or_none, window_columns, window_docs

__all__ = ["WindowRows", "WindowResults", "result_rows", "drift_rows"]

# The rows of a batch of window results: (window_results rows, drift_events rows).
WindowRows = tuple[list[dict], list[dict]]


def result_rows(results: Iterable[WindowResult]) -> WindowRows:
    """Return the window_results rows and drift_events rows of window results (docs/results.md)."""
    rows, events = [], []
    for result in results:
        window = window_columns(result, "a window result")
        check_name("a window result's model", result.model)
        check_name("a window result's version", result.version)
        key = {"model": result.model, "version": result.version, "segment": result.segment or "",
               "window_kind": window["window_kind"],
               "window_start_ms": window["window_start_ms"], "window_seq": window["window_seq"]}
        rows.append(dict(key, window_end_ms=window["window_end_ms"], partial=window["partial"],
                         drifted=result.drifted, events=result.events, result=result.to_dict()))
        events.extend(dict(key, **event) for event in drift_rows(result.drift))
    return rows, events


def drift_rows(drift: DriftVerdicts) -> Iterator[dict]:
    """One row per drifted input feature and per drifted class probability, one per other detector that drifted."""
    if drift.input is not None and drift.input.drifted:
        features = [f for f in drift.input.features if f.drifted]
        for f in features:
            yield _drift_row("input", f.feature, f.statistic, f.p_value, adjusted=f.p_value_adjusted)
        if not features:  # drifted as a whole (cannot happen with the KS detector, kept for the schema's sake)
            yield _drift_row("input", "", None, None, adjusted=None)
    for detector, d in (("confidence", drift.confidence), ("prediction", drift.prediction)):
        if d is not None and d.drifted:
            yield _drift_row(detector, "", d.statistic, d.p_value, adjusted=None)
    if drift.probabilities is not None and drift.probabilities.drifted:
        for c in drift.probabilities.classes:
            if c.drifted:
                yield _drift_row("probabilities", c.feature, c.statistic, c.p_value, adjusted=c.p_value_adjusted)
    e = drift.embedding
    if e is not None and e.drifted:
        for c in e.components:
            if c.drifted:
                yield _drift_row("embedding", c.feature, c.statistic, c.p_value, adjusted=c.p_value_adjusted)
        m = e.multivariate
        if m is not None and m.drifted:
            yield _drift_row("embedding", "mmd", m.statistic, m.p_value, adjusted=m.p_value_adjusted)


def _drift_row(detector: str, feature: str, statistic, p_value, *, adjusted) -> dict:
    return {"detector": detector, "feature": feature, "statistic": number_or_none(statistic),
            "p_value": number_or_none(p_value), "p_value_adjusted": number_or_none(adjusted)}


class WindowResults(TableFamily):
    """Writes and reads ``window_results`` and ``drift_events``."""

    rows = staticmethod(result_rows)

    @staticmethod
    def write(conn: sa.Connection, rows: WindowRows) -> None:
        """Upsert the windows of ``rows`` (from :meth:`rows`) and replace their drift events, in ``conn``."""
        windows, events = rows
        if not windows:
            return
        upsert(conn, tables.window_results, windows, tables.WINDOW_KEY)
        # Replace, not merge, the drift events of each window: a re-evaluated window may drift on fewer features.
        t = tables.drift_events.c
        conn.execute(
            sa.delete(tables.drift_events).where(*(getattr(t, k) == sa.bindparam(f"k_{k}") for k in tables.WINDOW_KEY)),
            [{f"k_{k}": row[k] for k in tables.WINDOW_KEY} for row in windows],
        )
        if events:
            conn.execute(sa.insert(tables.drift_events), events)

    def history(
        self, model: str, version: str | None = None, *, since: datetime | str | int | None = None,
        limit: int | None = None, segment: str | None = None,
    ) -> list[dict]:
        """Stored window results of ``model``, ordered by window start (arguments: :meth:`SqlStore.history`)."""
        t = tables.window_results.c
        where = sa.and_(t.model == model, *(getattr(t, k) == v for k, v in (("version", version), ("segment", segment))
                                            if v is not None))
        return window_docs(self._connect, tables.window_results, where, since=since, limit=limit,
                           tiebreak=(t.version, t.segment))

    def streams(self) -> list[tuple[str, str]]:
        """Return every (model, version) with a stored window result, sorted."""
        t = tables.window_results.c
        with self._connect(write=False) as conn:
            query = sa.select(t.model, t.version).distinct().order_by(t.model, t.version)
            return [tuple(r) for r in conn.execute(query)]
