"""Experiment and shadow results in the SQL store, on SQLite and PostgreSQL; schema version 3 and its upgrade."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from sinks.sql import schema as sql_schema
from sinks.sql import SqlStore
from tests import factories

T0 = 1_764_000_000_000


def exp_result(start_ms=T0, *, experiment="exp", samples=100, mismatch=False, partial=False):
    return factories.experiment(start_ms, experiment=experiment, samples=samples, mismatch=mismatch, partial=partial)


def shadow_result(start_ms=T0, *, model="m", n=10, agreement=0.95):
    return factories.shadow(start_ms, model=model, n=n, agreement=agreement)


def test_commit_writes_experiment_and_shadow_results_with_the_checkpoint(store):
    store.commit("g", results=[], checkpoints={("t", 0): (10, b"state")},
                 experiment_results=[exp_result(T0), exp_result(T0 + 60_000, samples=200)],
                 shadow_results=[shadow_result(T0), shadow_result(T0, model="other", agreement=None)])
    assert [r["samples"] for r in store.experiment_results("exp")] == [100, 200]
    assert store.shadow_results("m")[0]["agreement_rate"] == 0.95
    assert store.shadow_results("other")[0]["agreement_rate"] is None
    assert store.experiment_names() == ["exp"]
    # Upserted by key: a replayed checkpoint (or a partial window later written complete) leaves one row.
    store.commit("g", results=[], checkpoints={("t", 0): (12, b"s2")}, expected_offsets={("t", 0): 10},
                 experiment_results=[exp_result(T0 + 60_000, samples=250)])
    assert [r["samples"] for r in store.experiment_results("exp")] == [100, 250]
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(sql_schema.experiment_results.c.samples, sql_schema.experiment_results.c.srm_mismatch)
                           .order_by(sql_schema.experiment_results.c.window_start_ms)).all()[-1]
    assert tuple(row) == (250, False)


def test_a_failed_checkpoint_writes_no_experiment_result(store):
    def boom():
        raise RuntimeError("crash before COMMIT")

    with pytest.raises(RuntimeError):
        store.commit("g", results=[], checkpoints={("t", 0): (5, None)}, experiment_results=[exp_result()],
                     shadow_results=[shadow_result()], before_commit=boom)
    assert store.experiment_results("exp") == [] and store.shadow_results("m") == []


def test_since_and_limit(store):
    store.upsert_experiment_results(None, [exp_result(T0 + i * 60_000, samples=i) for i in range(5)])
    assert [r["samples"] for r in store.experiment_results("exp", limit=2)] == [3, 4]
    assert [r["samples"] for r in store.experiment_results("exp", since=(T0 + 180_000) // 1000)] == [3, 4]
    assert store.experiment_results("nope") == []
    with store.transaction() as conn:
        store.upsert_shadow_results(conn, [shadow_result(T0 + i * 60_000, n=i) for i in range(3)])
    assert [r["n"] for r in store.shadow_results("m", limit=1)] == [2]


def test_malformed_results_are_refused(store):
    # A typed result always has its samples; the malformed one a store can still be handed has no window end.
    with pytest.raises(ValueError, match="no 'window_end'"):
        store.upsert_experiment_results(None, [dataclasses.replace(exp_result(), window_end_ms=None)])
    with pytest.raises(ValueError, match="model"):
        store.upsert_shadow_results(None, [shadow_result(model="")])


def test_version_2_database_is_upgraded_to_3(store):
    store.create_schema()
    with store.engine.begin() as conn:
        sql_schema.experiment_results.drop(conn)
        sql_schema.shadow_results.drop(conn)
        conn.execute(sa.update(sql_schema.schema_version).values(version=2))
    fresh = SqlStore(store.url.render_as_string(hide_password=False))
    try:
        fresh.create_schema()
        assert fresh.schema_version() == sql_schema.SCHEMA_VERSION  # 2 -> 3 -> the current one
        fresh.upsert_experiment_results(None, [exp_result()])
        assert len(fresh.experiment_results("exp")) == 1
    finally:
        fresh.close()
