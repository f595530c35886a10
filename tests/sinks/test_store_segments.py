"""The SQL store with segments: the window key carries the segment, and a version-3 database is upgraded."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sinks.sql import schema as sql_schema
from sinks.sql import SqlStore
from tests import factories

pytestmark = pytest.mark.integration

T0 = 1_764_000_000_000
FIVE_MIN = 300_000


def window(start_ms=T0, segment=None, events=100, drifted=False):
    features = [factories.feature("word_count", 0.3, 1e-12, 4e-12, True, window_n=events)] if drifted else []
    return factories.window(start_ms, start_ms + FIVE_MIN, model="sentiment", version="3", segment=segment,
                            events=events, features=features)


def _v3_tables() -> sa.MetaData:
    """window_results and drift_events as schema version 3 created them (no segment)."""
    md = sa.MetaData()
    name, json = sa.String(255), sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
    key = [sa.Column("model", name, primary_key=True), sa.Column("version", name, primary_key=True),
           sa.Column("window_kind", sa.String(16), primary_key=True),
           sa.Column("window_start_ms", sa.BigInteger, primary_key=True, autoincrement=False),
           sa.Column("window_seq", sa.BigInteger, primary_key=True, autoincrement=False)]
    sa.Table("window_results", md, *[c._copy() for c in key],
             sa.Column("window_end_ms", sa.BigInteger, nullable=False), sa.Column("partial", sa.Boolean, nullable=False),
             sa.Column("drifted", sa.Boolean, nullable=False), sa.Column("events", sa.BigInteger, nullable=False),
             sa.Column("result", json, nullable=False), sa.Index("window_results_model_start", "model", "window_start_ms"))
    sa.Table("drift_events", md, *[c._copy() for c in key],
             sa.Column("detector", sa.String(64), primary_key=True), sa.Column("feature", name, primary_key=True),
             sa.Column("statistic", sa.Double), sa.Column("p_value", sa.Double), sa.Column("p_value_adjusted", sa.Double),
             sa.Index("drift_events_model_start", "model", "window_start_ms"))
    return md


def test_segments_of_one_window_are_stored_apart_and_filtered(store_url):
    with SqlStore(store_url) as store:
        store.commit("g", results=[window(segment=None), window(segment="en", events=7),
                                   window(segment="fr", events=9, drifted=True)], checkpoints={})
        assert [(r.get("segment"), r["events"]) for r in store.history("sentiment")] == [(None, 100), ("en", 7), ("fr", 9)]
        assert [r["events"] for r in store.history("sentiment", segment="fr")] == [9]
        assert [r["events"] for r in store.history("sentiment", segment="")] == [100]
        # A re-closed window replaces its own segment's row only.
        store.commit("g", results=[window(segment="en", events=8)], checkpoints={})
        assert [r["events"] for r in store.history("sentiment")] == [100, 8, 9]
        t = sql_schema.drift_events.c
        with store.engine.connect() as conn:
            assert list(conn.execute(sa.select(t.segment, t.feature))) == [("fr", "word_count")]


def test_a_version_3_database_is_upgraded_keeping_its_rows(store_url):
    engine = sa.create_engine(store_url)
    old = window(drifted=True)
    row, events = sql_schema_rows(old)
    v3 = _v3_tables()
    with engine.begin() as conn:
        v3.create_all(conn)
        sql_schema.schema_version.create(conn)
        conn.execute(sa.insert(sql_schema.schema_version).values(id=1, version=3, updated_at_ms=0))
        conn.execute(sa.insert(v3.tables["window_results"]), row)
        conn.execute(sa.insert(v3.tables["drift_events"]), events)
    engine.dispose()
    with SqlStore(store_url) as store:
        store.create_schema()
        assert store.schema_version() == sql_schema.SCHEMA_VERSION == 6  # 3 -> 4 (segments) -> 5 -> 6 (new tables)
        assert store.history("sentiment") == [old.to_dict()]
        assert store.history("sentiment", segment="") == [old.to_dict()]
        # The upgraded key takes a segment's window of the same start next to the old one.
        store.commit("g", results=[window(segment="fr", events=5)], checkpoints={})
        assert [r["events"] for r in store.history("sentiment")] == [100, 5]
        t = sql_schema.drift_events.c
        with store.engine.connect() as conn:
            assert list(conn.execute(sa.select(t.segment, t.feature, t.window_start_ms))) == [("", "word_count", T0)]
        names = set(sa.inspect(store.engine).get_table_names())
        assert not {"window_results_v3", "drift_events_v3"} & names  # the copies are gone
        indexes = {i["name"] for i in sa.inspect(store.engine).get_indexes("window_results")}
        assert "window_results_model_start" in indexes


def sql_schema_rows(result):
    """The version-3 rows of a segment-less result: today's rows without the segment column."""
    from sinks.sql.windows import result_rows

    rows, events, _ = result_rows([result])
    strip = lambda d: {k: v for k, v in d.items() if k != "segment"}  # noqa: E731
    return strip(rows[0]), [strip(e) for e in events]
