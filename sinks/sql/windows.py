"""The window tables of the SQL store: ``window_results`` and their ``drift_events`` (docs/storage.md)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa

from monitor.results import DriftVerdicts, WindowEvidence, WindowResult
from sinks.sql import schema as tables
from sinks.sql.engine import upsert
from sinks.sql.rows import TableFamily, check_name, number_or_none, to_ms, window_columns, window_docs

__all__ = ["WindowRows", "WindowResults", "result_rows", "drift_rows"]

class WindowRows(NamedTuple):
    """The rows of a batch of window results."""

    windows: list[dict]  # window_results
    events: list[dict]  # drift_events
    evidence: list[dict]  # window_evidence, for the results that carry evidence


def result_rows(results: Iterable[WindowResult]) -> WindowRows:
    """Return the window_results, drift_events and window_evidence rows of window results (docs/results.md)."""
    rows, events, evidence = [], [], []
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
        if result.evidence is not None:
            evidence.append(dict(key, evidence=result.evidence.to_dict()))
    return WindowRows(rows, events, evidence)


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
        """Upsert the windows of ``rows`` (from :meth:`rows`), replace their drift events and evidence, in ``conn``."""
        windows, events, evidence = rows
        if not windows:
            return
        upsert(conn, tables.window_results, windows, tables.WINDOW_KEY)
        # Replace, not merge, the drift events and evidence of each window: a re-evaluated window may drift on
        # fewer features, and a window written again without evidence (explain turned off) keeps none.
        keys = [{f"k_{k}": row[k] for k in tables.WINDOW_KEY} for row in windows]
        for table, new in ((tables.drift_events, events), (tables.window_evidence, evidence)):
            conn.execute(sa.delete(table).where(*(table.c[k] == sa.bindparam(f"k_{k}") for k in tables.WINDOW_KEY)),
                         keys)
            if new:
                conn.execute(sa.insert(table), new)

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

    def with_evidence(
        self, model: str, version: str | None = None, *, segment: str | None = None,
        since: datetime | str | int | None = None, until: datetime | str | int | None = None, limit: int | None = None,
    ) -> list[tuple[dict, WindowEvidence | None]]:
        """Stored windows of ``model`` with their evidence (``None`` where a window has none), oldest first.

        ``since``/``until``: windows starting at or after / before; ``limit``: the newest ones.
        """
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        w, e = tables.window_results.c, tables.window_evidence.c
        on = sa.and_(*(w[k] == e[k] for k in tables.WINDOW_KEY))
        query = sa.select(w.result, e.evidence).select_from(tables.window_results.outerjoin(tables.window_evidence, on))
        query = query.where(w.model == model, *(w[k] == v for k, v in (("version", version), ("segment", segment))
                                                  if v is not None))
        if since is not None:
            query = query.where(w.window_start_ms >= to_ms(since, "since"))
        if until is not None:
            query = query.where(w.window_start_ms < to_ms(until, "until"))
        order = (w.window_start_ms, w.version, w.segment, w.window_kind, w.window_seq)
        query = query.order_by(*order) if limit is None else query.order_by(*(c.desc() for c in order)).limit(limit)
        with self._connect(write=False) as conn:
            found = [(result, WindowEvidence.from_dict(evidence) if evidence is not None else None)
                     for result, evidence in conn.execute(query)]
        return found if limit is None else found[::-1]

    def streams(self) -> list[tuple[str, str]]:
        """Return every (model, version) with a stored window result, sorted."""
        t = tables.window_results.c
        with self._connect(write=False) as conn:
            query = sa.select(t.model, t.version).distinct().order_by(t.model, t.version)
            return [tuple(r) for r in conn.execute(query)]
