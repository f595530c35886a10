"""The SQL store on SQLite and PostgreSQL: schema versioning, profiles, idempotent upserts, the atomic commit
that exactly-once rests on, checkpoints and history."""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from sinks.sql import schema as sql_schema
from sinks.sql import CheckpointConflict, ProfileInfo, ProfileNotFound, SchemaVersionError, SqlStore, StoreUnavailable
from tests import factories

pytestmark = pytest.mark.integration

T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z, a multiple of 5 minutes
FIVE_MIN = 300_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def result(start_ms=T0, *, model="sentiment", version="3", events=100, drifted=False, kind="time", seq=None,
           drifted_features=(), partial=False):
    features = [factories.feature(name, 0.3, 1e-12, 4e-12, True, window_n=events) for name in drifted_features]
    features.append(factories.feature("word_count", 0.01, 0.9, 0.9, False, window_n=events))
    return factories.window(start_ms, start_ms + FIVE_MIN, model=model, version=version, kind=kind, seq=seq,
                            events=events, partial=partial, features=features,
                            confidence=factories.confidence_shift(drifted, 0.2, 1e-5))


def count(store: SqlStore, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def drift_rows(store: SqlStore) -> list[tuple]:
    t = sql_schema.drift_events.c
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(t.window_start_ms, t.detector, t.feature, t.statistic, t.p_value, t.p_value_adjusted)
            .order_by(t.window_start_ms, t.detector, t.feature))]


# -- schema --------------------------------------------------------------------------------------------------------


def test_create_schema_is_idempotent_and_keeps_data(store_url):
    with SqlStore(store_url) as first:
        first.create_schema()
        first.commit("g", results=[result()], checkpoints={("t", 0): (7, b"s")})
    with SqlStore(store_url) as second:
        second.create_schema()
        second.create_schema()
        assert second.schema_version() == sql_schema.SCHEMA_VERSION
        assert len(second.history("sentiment")) == 1
        assert second.load_checkpoints("g", [("t", 0)]) == {("t", 0): (7, b"s")}


def test_schema_is_created_on_first_use(store_url):
    with SqlStore(store_url) as store:
        assert store.schema_version() is None
        assert store.history("sentiment") == []
        assert store.schema_version() == sql_schema.SCHEMA_VERSION


def test_concurrent_create_schema_from_several_stores(store_url):
    stores = [SqlStore(store_url) for _ in range(4)]
    errors = []

    def create(s):
        try:
            s.create_schema()
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert errors == []
    with SqlStore(store_url) as store:
        assert store.schema_version() == sql_schema.SCHEMA_VERSION


def test_newer_schema_version_is_refused(store):
    with store.engine.begin() as conn:
        conn.execute(sa.update(sql_schema.schema_version).values(version=sql_schema.SCHEMA_VERSION + 1))
    fresh = SqlStore(store.url.render_as_string(hide_password=False))
    try:
        with pytest.raises(SchemaVersionError, match="newer"):
            fresh.create_schema()
        # The lazy check on first use refuses it too, rather than writing rows a newer nlpmon may misread.
        with pytest.raises(SchemaVersionError):
            fresh.history("sentiment")
    finally:
        fresh.close()


def test_older_schema_is_upgraded_step_by_step(store, monkeypatch):
    steps = []
    monkeypatch.setitem(sql_schema.MIGRATIONS, sql_schema.SCHEMA_VERSION - 1,
                        lambda conn: steps.append(conn.execute(sa.select(1)).scalar()))
    with store.engine.begin() as conn:
        conn.execute(sa.update(sql_schema.schema_version).values(version=sql_schema.SCHEMA_VERSION - 1))
    store.create_schema()
    assert steps == [1]
    assert store.schema_version() == sql_schema.SCHEMA_VERSION


# -- profiles ------------------------------------------------------------------------------------------------------


def test_profiles_are_versioned_per_model_and_one_is_active(store):
    assert store.active_profile("sentiment") is None
    assert store.save_profile("sentiment", {"n": 1}, activate=True) == 1
    assert store.save_profile("sentiment", {"n": 2}, activate=False) == 2
    assert store.active_profile("sentiment") == {"n": 1}
    assert store.save_profile("sentiment", {"n": 3}, activate=True) == 3
    assert store.active_profile("sentiment") == {"n": 3}
    # Another model has versions of its own.
    assert store.save_profile("toxicity", {"n": 10}, activate=True) == 1

    store.activate_profile("sentiment", 2)
    assert store.active_profile("sentiment") == {"n": 2}
    assert store.active_profile("toxicity") == {"n": 10}
    infos = store.list_profiles("sentiment")
    assert [(p.version, p.active) for p in infos] == [(1, False), (2, True), (3, False)]
    assert all(isinstance(p, ProfileInfo) and p.created_at_ms > T0 for p in infos)

    with pytest.raises(ProfileNotFound):
        store.activate_profile("sentiment", 9)
    assert store.active_profile("sentiment") == {"n": 2}


def test_active_profiles_of_every_model(store):
    store.save_profile("sentiment", {"n": 1}, activate=True)
    store.save_profile("sentiment", {"n": 2}, activate=False)
    store.save_profile("toxicity", {"n": 3}, activate=False)
    store.save_profile("spam", {"n": 4}, activate=True)
    assert store.active_profiles() == {"sentiment": {"n": 1}, "spam": {"n": 4}}


def test_database_allows_one_active_profile_per_model(store):
    store.save_profile("sentiment", {"n": 1}, activate=True)
    with pytest.raises(sa.exc.IntegrityError):
        with store.engine.begin() as conn:
            conn.execute(sa.insert(sql_schema.reference_profiles).values(
                model="sentiment", profile_version=2, active=True, created_at_ms=T0, profile={}))


def test_profile_round_trips_nested_json(store):
    profile = {"features": {"char_length": [1.5, 2.25, 1e-300]}, "classes": {"positive": 0.6}, "n": 10_000}
    store.save_profile("sentiment", profile, activate=True)
    assert store.active_profile("sentiment") == profile


# -- window results ------------------------------------------------------------------------------------------------


def test_upsert_replaces_a_window_and_its_drift_events(store):
    store.upsert_window_results(None, [result(events=50, partial=True, drifted_features=("char_length", "words"))])
    assert len(drift_rows(store)) == 2

    final = result(events=120, drifted=True, drifted_features=("char_length",))
    store.upsert_window_results(None, [final])
    store.upsert_window_results(None, [final])  # a replay of the same batch

    assert store.history("sentiment") == [final.to_dict()]
    assert count(store, sql_schema.window_results) == 1
    assert drift_rows(store) == [
        (T0, "confidence", "", 0.2, 1e-5, None),
        (T0, "input", "char_length", 0.3, 1e-12, 4e-12),
    ]


def test_same_window_twice_in_one_batch_keeps_the_last(store):
    store.upsert_window_results(None, [result(events=1, partial=True), result(events=2)])
    assert [r["events"] for r in store.history("sentiment")] == [2]


def test_count_windows_sharing_a_start_time_are_distinct(store):
    store.upsert_window_results(None, [result(kind="count", seq=0), result(kind="count", seq=1)])
    assert [r["window_seq"] for r in store.history("sentiment")] == [0, 1]


def test_upsert_joins_a_callers_transaction(store):
    with pytest.raises(RuntimeError):
        with store.transaction() as conn:
            store.upsert_window_results(conn, [result()])
            raise RuntimeError("caller fails after the write")
    assert store.history("sentiment") == []


def test_malformed_result_is_rejected_before_writing(store):
    bad = dataclasses.replace(result(), window_end_ms=None)
    with pytest.raises(ValueError, match="window_end"):
        store.commit("g", results=[result(T0 + FIVE_MIN), bad], checkpoints={("t", 0): (5, None)})
    assert store.history("sentiment") == []
    assert store.load_checkpoints("g", [("t", 0)]) == {}


# -- the atomic commit ---------------------------------------------------------------------------------------------


def _committed_state(store):
    return store.history("sentiment"), store.load_checkpoints("g", [("t", 0), ("t", 1)]), drift_rows(store)


def test_before_commit_runs_inside_the_transaction(store):
    seen = []

    def hook():
        seen.append(True)
        raise RuntimeError("killed mid-checkpoint")

    with pytest.raises(RuntimeError):
        store.commit("g", results=[result()], checkpoints={("t", 0): (3, b"")}, before_commit=hook)
    assert seen == [True]
    assert _committed_state(store) == ([], {}, [])


def test_commit_writes_results_and_checkpoints_together(store):
    store.commit("g", results=[result(T0), result(T0 + FIVE_MIN, drifted=True)],
                 checkpoints={("t", 0): (10, b"state-0"), ("t", 1): (4, None)})
    history, cps, drifts = _committed_state(store)
    assert [r["window_start"] for r in history] == [iso(T0), iso(T0 + FIVE_MIN)]
    assert cps == {("t", 0): (10, b"state-0"), ("t", 1): (4, None)}
    assert drifts == [(T0 + FIVE_MIN, "confidence", "", 0.2, 1e-5, None)]


def test_commit_is_all_or_nothing_when_the_database_fails_mid_transaction(store):
    store.commit("g", results=[result(T0, events=10)], checkpoints={("t", 0): (10, b"before")})
    before = _committed_state(store)
    executed = []

    def fail_on_drift_insert(conn, cursor, statement, parameters, context, executemany):
        executed.append(statement.split()[0:3])
        if statement.lstrip().upper().startswith("INSERT INTO DRIFT_EVENTS"):
            raise RuntimeError("simulated failure after the checkpoint and results were written")

    sa.event.listen(store.engine, "before_cursor_execute", fail_on_drift_insert)
    try:
        with pytest.raises(RuntimeError, match="simulated"):
            store.commit("g", results=[result(T0, events=99), result(T0 + FIVE_MIN, drifted=True)],
                         checkpoints={("t", 0): (20, b"after"), ("t", 1): (3, b"new")})
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", fail_on_drift_insert)
    # The checkpoint and result upserts did run before the failure...
    assert ["INSERT", "INTO", "checkpoints"] in executed
    assert ["INSERT", "INTO", "window_results"] in executed
    # ...and were rolled back with it.
    assert _committed_state(store) == before


def test_commit_is_all_or_nothing_when_a_result_cannot_be_serialized(store):
    store.commit("g", results=[result(T0)], checkpoints={("t", 0): (10, b"before")})
    before = _committed_state(store)
    unserializable = dataclasses.replace(result(T0 + FIVE_MIN), predictions={"positive": object()})
    with pytest.raises((TypeError, sa.exc.StatementError)):
        store.commit("g", results=[result(T0, events=5), unserializable], checkpoints={("t", 0): (20, b"after")})
    assert _committed_state(store) == before


def test_checkpoints_round_trip_binary_state_and_are_replaced(store):
    state = bytes(range(256)) * 4096 + b"\x00"  # 1 MiB with every byte value, ending in NUL
    store.commit("g", results=[], checkpoints={("t", 0): (1, state), ("t", 1): (2, b""), ("u", 0): (3, None)})
    store.commit("other-group", results=[], checkpoints={("t", 0): (99, b"x")})
    TP = collections.namedtuple("TP", "topic partition")  # kafka-python's TopicPartition is a namedtuple too

    loaded = store.load_checkpoints("g", [TP("t", 0), TP("t", 1), TP("u", 0), TP("t", 7)])
    assert loaded == {("t", 0): (1, state), ("t", 1): (2, b""), ("u", 0): (3, None)}
    assert isinstance(loaded[("t", 0)][1], bytes)
    assert loaded[TP("t", 0)] == (1, state)
    assert store.load_checkpoints("g", []) == {}

    store.commit("g", results=[], checkpoints={("t", 0): (5, b"newer")})
    assert store.load_checkpoints("g", [("t", 0), ("t", 1)]) == {("t", 0): (5, b"newer"), ("t", 1): (2, b"")}


@pytest.mark.parametrize("bad, error", [
    ((-1, b""), ValueError),      # offsets are never negative
    ((True, b""), ValueError),    # a bool is not an offset
    ((1, "text"), TypeError),     # state is bytes, not str
])
def test_bad_checkpoints_are_refused(store, bad, error):
    with pytest.raises(error):
        store.commit("g", results=[result()], checkpoints={("t", 0): bad})
    assert store.history("sentiment") == []


# -- history -------------------------------------------------------------------------------------------------------


def test_history_filters_by_version_since_and_limit(store):
    store.upsert_window_results(None, [
        result(T0 + 2 * FIVE_MIN, version="3"),
        result(T0, version="3"),
        result(T0 + FIVE_MIN, version="4"),
        result(T0 + 3 * FIVE_MIN, version="3"),
        result(T0, model="toxicity"),
    ])

    def starts(rows):
        return [(r["version"], r["window_start"]) for r in rows]

    assert starts(store.history("sentiment")) == [
        ("3", iso(T0)), ("4", iso(T0 + FIVE_MIN)), ("3", iso(T0 + 2 * FIVE_MIN)), ("3", iso(T0 + 3 * FIVE_MIN))]
    assert starts(store.history("sentiment", version="3")) == [
        ("3", iso(T0)), ("3", iso(T0 + 2 * FIVE_MIN)), ("3", iso(T0 + 3 * FIVE_MIN))]
    since = T0 + FIVE_MIN
    expected = [("4", iso(since)), ("3", iso(since + FIVE_MIN)), ("3", iso(since + 2 * FIVE_MIN))]
    assert starts(store.history("sentiment", since=since)) == expected
    assert starts(store.history("sentiment", since=iso(since))) == expected
    assert starts(store.history("sentiment", since=datetime.fromtimestamp(since / 1000, tz=timezone.utc))) == expected
    # Epoch numbers, also as the strings a command line passes: below 10^11 seconds, else milliseconds.
    assert starts(store.history("sentiment", since=since // 1000)) == expected
    assert starts(store.history("sentiment", since=str(since))) == expected
    assert starts(store.history("sentiment", since=str(since // 1000))) == expected
    # limit keeps the newest windows, still oldest first.
    assert starts(store.history("sentiment", version="3", limit=2)) == [
        ("3", iso(T0 + 2 * FIVE_MIN)), ("3", iso(T0 + 3 * FIVE_MIN))]
    assert store.history("sentiment", limit=0) == []
    assert store.history("nobody") == []
    with pytest.raises(ValueError):
        store.history("sentiment", since="2025-11-24 16:00:00")  # no timezone


# -- availability --------------------------------------------------------------------------------------------------


def test_ping_is_true_for_a_reachable_database(store):
    assert store.ping()


def test_unreachable_sqlite_raises_store_unavailable(tmp_path):
    with SqlStore(f"sqlite:///{tmp_path / 'missing-dir' / 'nlpmon.db'}") as store:
        assert store.ping() is False
        with pytest.raises(StoreUnavailable):
            store.history("sentiment")


def test_unreachable_postgresql_raises_store_unavailable():
    pytest.importorskip("psycopg")
    # Port 1 on loopback refuses connections at once.
    with SqlStore("postgresql+psycopg://postgres@127.0.0.1:1/test") as store:
        assert store.ping() is False
        with pytest.raises(StoreUnavailable, match="database unavailable"):
            store.commit("g", results=[result()], checkpoints={("t", 0): (1, b"")})


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    with SqlStore(f"sqlite:///{tmp_path / 'nlpmon.db'}") as store:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


# -- fencing -------------------------------------------------------------------------------------------------------


def test_expected_offsets_fence_out_a_stale_writer(store):
    store.commit("g", results=[result(T0)], checkpoints={("t", 0): (10, b"a")}, expected_offsets={("t", 0): None})
    before = _committed_state(store)
    for expected in (None, 9):  # "no checkpoint yet", or an offset it has moved past
        with pytest.raises(CheckpointConflict) as info:
            store.commit("g", results=[result(T0, events=1)], checkpoints={("t", 0): (30, b"stale")},
                         expected_offsets={("t", 0): expected})
        assert info.value.partitions[("t", 0)][0] == expected
        assert _committed_state(store) == before
    store.commit("g", results=[], checkpoints={("t", 0): (20, b"b")}, expected_offsets={("t", 0): 10})
    assert store.load_checkpoints("g", [("t", 0)]) == {("t", 0): (20, b"b")}


@pytest.mark.parametrize("expected", [None, 10])
def test_of_two_concurrent_fenced_commits_exactly_one_wins(store, expected):
    if expected is not None:
        store.commit("g", results=[], checkpoints={("t", 0): (expected, b"")})
    url = store.url.render_as_string(hide_password=False)
    stores = [SqlStore(url), SqlStore(url)]
    barrier = threading.Barrier(2)
    outcomes = {}

    def slow_results(conn, cursor, statement, parameters, context, executemany):
        # Hold the transaction open after the checkpoint write, so the other commit overlaps it.
        if statement.lstrip().upper().startswith("INSERT INTO WINDOW_RESULTS"):
            time.sleep(0.5)

    def run(i):
        barrier.wait()
        try:
            stores[i].commit("g", results=[result(T0, events=100 + i)], checkpoints={("t", 0): (50 + i, b"%d" % i)},
                             expected_offsets={("t", 0): expected})
            outcomes[i] = "committed"
        except CheckpointConflict:
            outcomes[i] = "conflict"

    for s in stores:
        s.create_schema()
        sa.event.listen(s.engine, "before_cursor_execute", slow_results)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert sorted(outcomes.values()) == ["committed", "conflict"]
    winner = next(i for i, o in outcomes.items() if o == "committed")
    assert store.load_checkpoints("g", [("t", 0)]) == {("t", 0): (50 + winner, b"%d" % winner)}
    assert [r["events"] for r in store.history("sentiment")] == [100 + winner]


def test_postgresql_outage_raises_store_unavailable_and_recovers(postgres_outage):
    with SqlStore(postgres_outage.url) as store:
        store.commit("g", results=[result(T0)], checkpoints={("t", 0): (1, b"a")})
        postgres_outage.cut()
        assert store.ping() is False
        with pytest.raises(StoreUnavailable):
            store.commit("g", results=[result(T0 + FIVE_MIN)], checkpoints={("t", 0): (2, b"b")})
        postgres_outage.restore()
        # The pool replaces the dropped connections by itself.
        assert store.ping() is True
        store.commit("g", results=[result(T0 + FIVE_MIN)], checkpoints={("t", 0): (2, b"b")})
        assert len(store.history("sentiment")) == 2
        assert store.load_checkpoints("g", [("t", 0)]) == {("t", 0): (2, b"b")}
