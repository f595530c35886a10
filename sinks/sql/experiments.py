"""The experiment tables of the SQL store: ``experiment_results`` and ``shadow_results`` (docs/experiments.md)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from detectors.base import finite_or_none
from monitor.results import ExperimentResult, ShadowResult
from sinks.sql import schema as tables
from sinks.sql.engine import upsert
from sinks.sql.rows import TableFamily, check_name, window_columns, window_docs

__all__ = ["ExperimentResults", "experiment_rows", "shadow_rows"]


def experiment_rows(results: Iterable[ExperimentResult]) -> list[dict]:
    """Rows of ``experiment_results`` (docs/experiments.md)."""
    rows = []
    for result in results:
        check_name("an experiment result's experiment", result.experiment)
        check_name("an experiment result's model", result.model)
        rows.append(dict(
            window_columns(result, "an experiment result"), experiment=result.experiment, model=result.model,
            samples=result.samples, srm_mismatch=result.srm_mismatch, significant=result.significant,
            degraded=result.degraded, guardrail_breached=result.guardrail_breached, result=result.to_dict(),
        ))  # fmt: skip
    return rows


def shadow_rows(results: Iterable[ShadowResult]) -> list[dict]:
    """Rows of ``shadow_results``."""
    rows = []
    for result in results:
        check_name("a shadow result's model", result.model)
        s = result.summary
        rows.append(dict(
            window_columns(result, "a shadow result"), model=result.model, pairs=s.n,
            agreement_rate=finite_or_none(s.agreement_rate), agreement_low=bool(s.agreement_low),
            result=result.to_dict(),
        ))  # fmt: skip
    return rows


class ExperimentResults(TableFamily):
    """Writes and reads ``experiment_results`` and ``shadow_results``.

    Every experiment result is cumulative since the experiment started, so the newest is its current state.
    """

    experiment_rows = staticmethod(experiment_rows)
    shadow_rows = staticmethod(shadow_rows)

    @staticmethod
    def write_experiments(conn: sa.Connection, rows: list[dict]) -> None:
        """Insert or replace experiment rows (from :meth:`experiment_rows`) in ``conn``."""
        upsert(conn, tables.experiment_results, rows, tables.EXPERIMENT_KEY)

    @staticmethod
    def write_shadow(conn: sa.Connection, rows: list[dict]) -> None:
        """Insert or replace shadow rows (from :meth:`shadow_rows`) in ``conn``."""
        upsert(conn, tables.shadow_results, rows, tables.SHADOW_KEY)

    def experiment_results(
        self, experiment: str, *, since: datetime | str | int | None = None, limit: int | None = None
    ) -> list[dict]:
        """Return stored results of ``experiment``, oldest first (``since``/``limit`` as for window results)."""
        table = tables.experiment_results
        return window_docs(self._connect, table, table.c.experiment == experiment, since=since, limit=limit)

    def shadow_results(
        self, model: str, *, since: datetime | str | int | None = None, limit: int | None = None
    ) -> list[dict]:
        """Return stored shadow-join results of served ``model``, oldest first."""
        return window_docs(self._connect, tables.shadow_results, tables.shadow_results.c.model == model, since=since,
                           limit=limit)

    def names(self) -> list[str]:
        """Return the names of every experiment with a stored result, sorted."""
        t = tables.experiment_results.c
        with self._connect(write=False) as conn:
            return list(conn.execute(sa.select(t.experiment).distinct().order_by(t.experiment)).scalars())
