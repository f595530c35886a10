"""Labels results (realised accuracy) in the SQL store, on SQLite and PostgreSQL; schema version 5 and its upgrade."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sinks.sql import schema as sql_schema
from sinks.sql import SqlStore
from sinks.sql.labels import label_results, upsert_label_results
from tests import factories

T0 = 1_764_000_000_000


def labels_result(start_ms=T0, **kw):
    return factories.labels(start_ms, size_ms=60_000, **kw)


def test_commit_writes_labels_results_with_the_checkpoint(store):
    store.commit("g", results=[], checkpoints={("t", 0): (10, b"state")},
                 label_results=[labels_result(T0), labels_result(T0 + 60_000, accuracy=None, labelled=0, estimate=None)])
    docs = label_results(store, "m")
    assert [d["accuracy"] for d in docs] == [0.9, None]
    assert docs[0]["result_kind"] == "labels" and docs[0]["classes"]["pos"]["recall"] == pytest.approx(27 / 28)
    assert docs[0] == labels_result(T0).to_dict()
    # Upserted by key: a partial result written complete later leaves one row.
    store.commit("g", results=[], checkpoints={("t", 0): (12, b"s2")}, expected_offsets={("t", 0): 10},
                 label_results=[labels_result(T0 + 60_000, accuracy=0.5)])
    assert [d["accuracy"] for d in label_results(store, "m")] == [0.9, 0.5]
    with store.engine.connect() as conn:
        t = sql_schema.label_results.c
        rows = conn.execute(sa.select(t.window_start_ms, t.labelled, t.accuracy, t.estimated_accuracy)
                            .order_by(t.window_start_ms)).all()
    assert [tuple(r) for r in rows] == [(T0, 40, 0.9, 0.85), (T0 + 60_000, 40, 0.5, 0.85)]


def test_a_failed_checkpoint_writes_no_labels_result(store):
    def boom():
        raise RuntimeError("crash before COMMIT")

    with pytest.raises(RuntimeError):
        store.commit("g", results=[], checkpoints={("t", 0): (5, None)}, label_results=[labels_result()],
                     before_commit=boom)
    assert label_results(store, "m") == []


def test_versions_limit_and_a_nameless_result(store):
    with store.transaction() as conn:
        upsert_label_results(conn, [labels_result(T0 + i * 60_000, version=str(i % 2)) for i in range(5)])
    assert len(label_results(store, "m")) == 5 and len(label_results(store, "m", "1")) == 2
    assert [d["window_start"] for d in label_results(store, "m", limit=2)] == ["2025-11-24T16:03:00.000Z",
                                                                                 "2025-11-24T16:04:00.000Z"]
    with pytest.raises(ValueError, match="labels result's model"):
        with store.transaction() as conn:
            upsert_label_results(conn, [labels_result(model="")])


def test_version_4_database_is_upgraded(store):
    store.create_schema()
    with store.engine.begin() as conn:
        sql_schema.label_results.drop(conn)
        conn.execute(sa.update(sql_schema.schema_version).values(version=4))
    fresh = SqlStore(store.url.render_as_string(hide_password=False))
    try:
        fresh.create_schema()
        assert fresh.schema_version() == sql_schema.SCHEMA_VERSION >= 5
        with fresh.transaction() as conn:
            upsert_label_results(conn, [labels_result()])
        assert len(label_results(fresh, "m")) == 1
    finally:
        fresh.close()
