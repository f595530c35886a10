"""Retention on SQLite and PostgreSQL: bounded batches, whole windows, rows a restart needs never deleted,
per-family limits, and space given back on SQLite."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sinks.sql import RetentionPolicy, SqlStore
from sinks.sql import schema as sql_schema
from sinks.sql.retention import DAY_MS
from tests import factories

pytestmark = pytest.mark.integration

NOW = 1_764_000_000_000  # 2025-11-24T16:00:00Z
FIVE_MIN = 300_000


def window(start_ms, *, model="m", version="1"):
    # Two drifted input features and a drifted confidence: three drift_events rows per window.
    features = [factories.feature(n, 0.3, 1e-12, 4e-12, True) for n in ("word_count", "oov_rate")]
    return factories.window(start_ms, start_ms + FIVE_MIN, model=model, version=version, features=features,
                            confidence=factories.confidence_shift(True, 0.2, 1e-5))


def count(store: SqlStore, table: sa.Table, where=None) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    if where is not None:
        query = query.where(where)
    with store.engine.connect() as conn:
        return conn.execute(query).scalar()


def old_and_new_windows(store, *, old=30, new=5, models=("m", "n")):
    """``old`` windows per model 40 days back, ``new`` ones within the last day; checkpoints of both."""
    results = []
    for model in models:
        results += [window(NOW - 40 * DAY_MS + i * FIVE_MIN, model=model) for i in range(old)]
        results += [window(NOW - DAY_MS + i * FIVE_MIN, model=model) for i in range(new)]
    store.commit("g", results=results, checkpoints={("t", 0): (123, b"state")})


def test_prune_batch_is_bounded_and_deletes_whole_windows(store):
    old_and_new_windows(store)
    policy = RetentionPolicy(results_days=30)
    deleted = store.prune_batch(policy, now_ms=NOW, batch_rows=7)
    assert deleted["window_results"] == 7
    assert deleted["drift_events"] == 21  # the windows' three events each, in the same transaction
    assert count(store, sql_schema.window_results) == 70 - 7
    assert count(store, sql_schema.drift_events) == 3 * (70 - 7)
    total = store.retention.prune(policy, now_ms=NOW, batch_rows=7)
    assert total["window_results"] == 60 - 7
    cut = NOW - 30 * DAY_MS
    assert count(store, sql_schema.window_results, sql_schema.window_results.c.window_start_ms < cut) == 0
    assert count(store, sql_schema.window_results) == 10
    assert count(store, sql_schema.drift_events) == 30
    # What a restart needs is untouched.
    assert store.load_checkpoints("g", [("t", 0)]) == {("t", 0): (123, b"state")}
    assert store.prune_batch(policy, now_ms=NOW) == dict.fromkeys(deleted, 0)


def test_no_policy_deletes_nothing(store):
    old_and_new_windows(store, old=3, new=1, models=("m",))
    assert not RetentionPolicy().active
    assert store.retention.prune(RetentionPolicy(), now_ms=NOW) == {t: 0 for t in store.prune_batch(RetentionPolicy(), now_ms=NOW)}
    assert count(store, sql_schema.window_results) == 4


def test_labels_and_reeval_have_their_own_limits(store):
    store.commit("g", results=[window(NOW - 40 * DAY_MS)], checkpoints={},
                 label_results=[factories.labels(NOW - 40 * DAY_MS), factories.labels(NOW - 200 * DAY_MS)])
    deleted = store.retention.prune(RetentionPolicy(results_days=30), now_ms=NOW)
    assert deleted["window_results"] == 1 and deleted["label_results"] == 0
    deleted = store.retention.prune(RetentionPolicy(results_days=30, labels_days=180), now_ms=NOW)
    assert deleted["label_results"] == 1
    assert count(store, sql_schema.label_results) == 1


def run(store, started_days_ago, outcome="success", dataset="d"):
    result = {"accuracy": 0.9} if outcome == "success" else None
    return store.save_reeval_run(model="m", version="1", dataset=dataset, started_at_ms=NOW - started_days_ago * DAY_MS,
                                 trigger="cli", outcome=outcome, result=result)


def test_reeval_prune_keeps_baseline_and_newest_successful_run(store):
    baseline = run(store, 400)
    middle = run(store, 300)
    failed = run(store, 250, outcome="failure")
    older_success = run(store, 200)
    recent = run(store, 1)  # the newest successful run of (m, d): its calibration table
    f_baseline, f_middle, f_newest = run(store, 500, dataset="f"), run(store, 450, dataset="f"), run(store, 300, dataset="f")
    deleted = store.retention.prune(RetentionPolicy(reeval_days=90), now_ms=NOW)
    assert deleted["reeval_runs"] == 4
    kept = {r.id for r in store.reeval_runs()}
    assert kept == {baseline, recent, f_baseline, f_newest}
    assert not kept & {middle, failed, older_success, f_middle}


def test_experiment_keeps_its_newest_row(store):
    with store.transaction() as conn:
        store.upsert_experiment_results(conn, [factories.experiment(NOW - d * DAY_MS) for d in (90, 80, 70)])
        store.upsert_shadow_results(conn, [factories.shadow(NOW - d * DAY_MS) for d in (90, 1)])
    deleted = store.retention.prune(RetentionPolicy(results_days=30), now_ms=NOW)
    assert deleted["experiment_results"] == 2 and deleted["shadow_results"] == 1
    rows = store.experiment_results("exp")
    assert [r["window_start"] for r in rows] == [rows[-1]["window_start"]] and len(rows) == 1


def test_active_profile_survives(store):
    store.save_profile("m", {"p": 1}, activate=True)
    old_and_new_windows(store, old=2, new=0, models=("m",))
    store.retention.prune(RetentionPolicy(results_days=1, labels_days=1, reeval_days=1), now_ms=NOW + 1000 * DAY_MS)
    assert store.active_profile("m") == {"p": 1}


def test_policy_refuses_negative_days():
    with pytest.raises(ValueError, match="results_days"):
        RetentionPolicy(results_days=-1)


def test_sqlite_gives_space_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'n.db'}"
    with SqlStore(url) as store:
        old_and_new_windows(store, old=400, new=0, models=("m",))
        path = tmp_path / "n.db"
        store.retention.prune(RetentionPolicy(results_days=1), now_ms=NOW)
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        before = path.stat().st_size
        said = store.release_space()
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            assert conn.exec_driver_sql("PRAGMA freelist_count").scalar() == 0
        assert "gave back" in said
        assert path.stat().st_size < before / 4


def test_sqlite_file_without_incremental_vacuum_is_rewritten_on_request(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()  # tables first: auto_vacuum stays off
    with SqlStore(f"sqlite:///{path}") as store:
        store.create_schema()
        assert "reused by new rows" in store.release_space()
        assert "rewrote" in store.release_space(full=True)
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2
