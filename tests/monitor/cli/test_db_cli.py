"""``nlpmon db status|upgrade|prune`` on SQLite and PostgreSQL: explicit upgrades (a DDL user upgrades, a
DML-only user runs the store), a daemon that may not upgrade says what to run, and a prune killed with
SIGKILL leaves whole windows and is finished by a rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid

import pytest
import sqlalchemy as sa

from monitor.devkit.synth.traffic import generate_events, write_events
from sinks.sql import RetentionPolicy, SchemaBehind, SqlStore
from sinks.sql import schema as sql_schema
from sinks.sql.retention import DAY_MS
from tests import factories
from tests.monitor.runtime.harness import nlpmon

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FIVE_MIN = 300_000


def db(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(nlpmon() + ["db", *argv], capture_output=True, text=True, timeout=timeout)


def set_version(url: str, version: int) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.update(sql_schema.schema_version).values(version=version))
    engine.dispose()


# -- status and upgrade ------------------------------------------------------------------------------------------
def test_status_and_upgrade(store_url):
    if store_url.startswith("sqlite"):  # a SQLite file that does not exist is not created by status
        missing = db("status", "--store", store_url)
        assert missing.returncode == 2 and "no SQLite database" in missing.stderr
        SqlStore(store_url).engine.connect().close()  # an empty file, as a fresh volume would hold
    empty = db("status", "--store", store_url)
    assert empty.returncode == 3 and "no nlpmon tables" in empty.stdout and "nlpmon db upgrade" in empty.stdout
    created = db("upgrade", "--store", store_url)
    assert created.returncode == 0 and f"created schema version {sql_schema.SCHEMA_VERSION}" in created.stdout
    current = db("status", "--store", store_url)
    assert current.returncode == 0 and "up to date" in current.stdout
    set_version(store_url, sql_schema.SCHEMA_VERSION - 1)
    assert db("status", "--store", store_url).returncode == 3
    upgraded = db("upgrade", "--store", store_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"from schema version {sql_schema.SCHEMA_VERSION - 1} to {sql_schema.SCHEMA_VERSION}" in upgraded.stdout
    assert "nothing to do" in db("upgrade", "--store", store_url).stdout
    set_version(store_url, sql_schema.SCHEMA_VERSION + 1)
    newer = db("status", "--store", store_url)
    assert newer.returncode == 2 and "newer" in newer.stderr and "Traceback" not in newer.stderr


def test_a_store_that_may_not_upgrade_names_the_command(store_url):
    SqlStore(store_url).create_schema()
    set_version(store_url, sql_schema.SCHEMA_VERSION - 1)
    with SqlStore(store_url, upgrade=False) as store:
        with pytest.raises(SchemaBehind) as caught:
            store.commit("g", results=[], checkpoints={("t", 0): (1, None)})
    message = str(caught.value)
    assert "\n" not in message and "nlpmon db upgrade --store" in message and "auto_upgrade" in message
    with SqlStore(store_url) as store:  # nothing was written, and the version is still the old one
        assert store.schema_version() == sql_schema.SCHEMA_VERSION - 1


def test_the_line_daemon_refuses_an_old_schema_in_one_line(tmp_path, store_url):
    SqlStore(store_url).create_schema()
    set_version(store_url, sql_schema.SCHEMA_VERSION - 1)
    write_events(tmp_path / "in.jsonl", generate_events(300, seed=1, rate_per_s=20))
    (tmp_path / "c.toml").write_text(
        f'[source]\nkind = "file"\npath = "{tmp_path / "in.jsonl"}"\n[output]\nstore = true\n'
        f'[store]\nurl = "{store_url}"\nauto_upgrade = false\n[metrics]\nenabled = false\n')
    run = subprocess.run(nlpmon() + ["run", "--config", str(tmp_path / "c.toml")], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2, run.stderr
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("nlpmon: error:")]
    assert len(errors) == 1 and "nlpmon db upgrade --store" in errors[0] and "Traceback" not in run.stderr
    assert db("upgrade", "--store", store_url).returncode == 0
    again = subprocess.run(nlpmon() + ["run", "--config", str(tmp_path / "c.toml")], capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr


# -- PostgreSQL: a DDL user upgrades, a DML-only user runs -------------------------------------------------------
@pytest.fixture
def pg_roles(postgres_url):
    """A fresh schema, a DDL role that owns its tables and a DML role granted only rows; URLs of both."""
    tag = uuid.uuid4().hex[:10]
    schema, ddl, dml = f"nlpmon_roles_{tag}", f"nlpmon_ddl_{tag}", f"nlpmon_dml_{tag}"
    admin = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        for statement in (
            f"CREATE ROLE {ddl} LOGIN", f"CREATE ROLE {dml} LOGIN", f"CREATE SCHEMA {schema} AUTHORIZATION {ddl}",
            f"GRANT USAGE ON SCHEMA {schema} TO {dml}",
            # What docs/storage.md tells a DBA to run once: tables the DDL role creates are the DML role's rows.
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {ddl} IN SCHEMA {schema} "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {dml}",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {ddl} IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {dml}",
        ):
            conn.execute(sa.text(statement))
    base = sa.engine.make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    urls = {role: base.set(username=name).render_as_string(hide_password=False) for role, name in (("ddl", ddl), ("dml", dml))}
    try:
        yield urls
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
            for role in (ddl, dml):
                conn.execute(sa.text(f"DROP OWNED BY {role}"))
                conn.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


def test_postgresql_ddl_user_upgrades_and_dml_user_runs(pg_roles):
    ddl, dml = pg_roles["ddl"], pg_roles["dml"]
    with SqlStore(dml, upgrade=False) as store, pytest.raises(SchemaBehind, match="nlpmon db upgrade"):
        store.check_schema()
    refused = db("upgrade", "--store", dml)
    assert refused.returncode == 2 and "permission denied" in refused.stderr and "Traceback" not in refused.stderr
    assert db("status", "--store", dml).returncode == 3
    assert db("upgrade", "--store", ddl).returncode == 0
    assert db("status", "--store", dml).returncode == 0
    old = factories.window(1_000_000_000_000, 1_000_000_300_000, model="m")
    # The daemon's path as the DML user, with auto_upgrade off and on (on: a current schema needs no DDL).
    for upgrade in (False, True):
        with SqlStore(dml, upgrade=upgrade) as store:
            store.commit("g", results=[old], checkpoints={("t", 0): (5, b"s")})
            store.save_reeval_run(model="m", version="1", dataset="d", started_at_ms=1, trigger="cli",
                                  outcome="failure", error="x")
            assert store.load_checkpoints("g", [("t", 0)]) == {("t", 0): (5, b"s")}
            assert len(store.history("m")) == 1
    pruned = db("prune", "--older-than", "30d", "--reeval-older-than", "30d", "--store", dml)
    assert pruned.returncode == 0, pruned.stderr
    assert "window_results 1" in pruned.stdout and "reeval_runs 2" in pruned.stdout
    # An older schema: the DML user is told what to run; the DDL user's upgrade lets it go on.
    set_version(ddl, sql_schema.SCHEMA_VERSION - 1)
    with SqlStore(dml, upgrade=False) as store, pytest.raises(SchemaBehind, match="nlpmon db upgrade"):
        store.history("m")
    assert db("upgrade", "--store", ddl).returncode == 0
    with SqlStore(dml, upgrade=False) as store:
        assert store.history("m") == []


# -- prune --------------------------------------------------------------------------------------------------------
WINDOWS = 12_000  # old windows, three drift events each: dozens of batches of 200


def fill(url: str, now_ms: int) -> None:
    """Old windows (41+ days) and 10 recent ones, written as rows (fast), with a checkpoint."""
    result = json.loads(json.dumps(factories.window(0, FIVE_MIN).to_dict()))
    rows, events = [], []
    for i in range(WINDOWS + 10):
        start = now_ms - 41 * DAY_MS - (WINDOWS - i) * FIVE_MIN if i < WINDOWS else now_ms - (i - WINDOWS + 1) * FIVE_MIN
        key = {"model": f"m{i % 3}", "version": "1", "segment": "", "window_kind": "time", "window_start_ms": start,
               "window_seq": 0}
        rows.append(dict(key, window_end_ms=start + FIVE_MIN, partial=False, drifted=True, events=100, result=result))
        events += [dict(key, detector="input", feature=f, statistic=0.3, p_value=1e-9, p_value_adjusted=1e-8)
                   for f in ("word_count", "oov_rate", "char_count")]
    with SqlStore(url) as store:
        store.commit("g", results=[], checkpoints={("t", 0): (99, b"state")})
        with store.transaction() as conn:
            conn.execute(sa.insert(sql_schema.window_results), rows)
            conn.execute(sa.insert(sql_schema.drift_events), events)


def consistency(url: str) -> tuple[int, int, int]:
    """(windows, windows without exactly their three events, drift events without their window)."""
    w, d = sql_schema.window_results, sql_schema.drift_events
    same = sa.and_(*(w.c[k] == d.c[k] for k in sql_schema.WINDOW_KEY))
    with SqlStore(url) as store, store.engine.connect() as conn:
        windows = conn.execute(sa.select(sa.func.count()).select_from(w)).scalar()
        events_of = sa.select(sa.func.count()).select_from(d).where(same).scalar_subquery()
        partial = conn.execute(sa.select(sa.func.count()).select_from(w).where(events_of != 3)).scalar()
        orphans = conn.execute(sa.select(sa.func.count()).select_from(d).where(~sa.exists().where(same))).scalar()
    return windows, partial, orphans


def test_prune_killed_mid_way_leaves_whole_windows_and_a_rerun_finishes(store_url):
    import time

    fill(store_url, time.time_ns() // 1_000_000)
    proc = subprocess.Popen(nlpmon() + ["db", "prune", "--older-than", "30d", "--batch-rows", "200",
                                        "--store", store_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert all(ln.startswith("batch ") for ln in lines), (lines, proc.stderr.read() if proc.poll() else "")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    windows, partial, orphans = consistency(store_url)
    assert 10 < windows <= WINDOWS + 10 - 3 * 200  # three batches or more deleted, not all: killed mid-way
    assert partial == 0 and orphans == 0
    rerun = db("prune", "--older-than", "30d", "--batch-rows", "2000", "--store", store_url, timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    assert consistency(store_url) == (10, 0, 0)
    assert f"window_results {windows - 10}, drift_events {3 * (windows - 10)}" in rerun.stdout
    with SqlStore(store_url) as store:
        assert store.load_checkpoints("g", [("t", 0)]) == {("t", 0): (99, b"state")}
        assert store.prune_batch(RetentionPolicy(results_days=30), now_ms=time.time_ns() // 1_000_000)["window_results"] == 0
