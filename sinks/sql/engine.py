"""How the SQL store talks to its database: the engine per dialect, transactions, errors, the upsert statement.

SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` for writers; PostgreSQL connect and keepalive
defaults bound how long a dead server can hang a call (docs/storage.md, *Availability*). Every error that
means "the database cannot be reached now" leaves here as :class:`StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator

import orjson
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "PG_CONNECT_DEFAULTS", "StoreUnavailable", "create_engine", "transaction",
           "ping", "json_dumps", "now_ms", "describe", "configure_sqlite", "upsert", "release_space"]

# How long a SQLite writer waits for another writer's lock before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 10_000
# libpq settings that bound how long a dead PostgreSQL server can hang a call: connecting, and noticing a
# silent peer on an open connection (keepalive after 10 s idle, then 3 probes 5 s apart).
PG_CONNECT_DEFAULTS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 10,
                        "keepalives_interval": 5, "keepalives_count": 3}


class StoreUnavailable(Exception):
    """The database cannot be reached or is locked right now; back off and retry."""


def create_engine(url: sa.URL, *, echo: bool = False) -> sa.Engine:
    """Return an engine for ``url`` with nlpmon's settings for its dialect; connects to nothing yet."""
    backend = url.get_backend_name()
    kwargs: dict = {"echo": echo, "json_serializer": json_dumps, "json_deserializer": orjson.loads}
    if backend == "postgresql" and url.get_driver_name() in ("psycopg", "psycopg2"):
        # Settings given in the URL's query string win over the defaults.
        kwargs["connect_args"] = {k: v for k, v in PG_CONNECT_DEFAULTS.items() if k not in url.query}
    if backend != "sqlite":
        kwargs["pool_pre_ping"] = True
    engine = sa.create_engine(url, **kwargs)
    if backend == "sqlite":
        configure_sqlite(engine, in_memory=url.database in (None, "", ":memory:"))
    return engine


@contextlib.contextmanager
def transaction(engine: sa.Engine, *, write: bool) -> Iterator[sa.Connection]:
    """Open a transaction, committed when the block ends; an unreachable database raises StoreUnavailable."""
    try:
        with engine.connect() as conn:
            if write:
                # Read by the SQLite "begin" hook: take the write lock up front (BEGIN IMMEDIATE), so a
                # transaction never fails half-way because another writer got there first.
                conn.execution_options(nlpmon_write=True)
            with conn.begin():
                yield conn
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as exc:
        raise StoreUnavailable(describe(exc)) from exc
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable(describe(exc)) from exc
        raise


def ping(engine: sa.Engine) -> bool:
    """Return whether the database answers a trivial query now (for readiness probes); never raises."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.select(1))
        return True
    except Exception:
        return False


def json_dumps(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def describe(exc: sa_exc.SQLAlchemyError) -> str:
    # The driver's message without the statement and parameters SQLAlchemy appends (they may hold state).
    orig = getattr(exc, "orig", None)
    return f"database unavailable: {(str(orig) if orig is not None else str(exc)).strip()}"


def configure_sqlite(engine: sa.Engine, *, in_memory: bool) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy emit BEGIN (below) instead of the sqlite3 module, which skips it before SELECTs.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if not in_memory:
            # Takes effect only in a file without tables yet (a new store): the pages of deleted rows can then
            # be given back to the filesystem by `PRAGMA incremental_vacuum` (release_space). On an older file
            # it changes nothing until a VACUUM (docs/storage.md, *Retention*).
            cursor.execute("PRAGMA auto_vacuum = INCREMENTAL")
            # WAL: readers (history, /readyz) never block the daemon's writes, nor the writes them.
            _wal(cursor)
            # In WAL mode NORMAL is still atomic and consistent after a crash; a power loss can only drop the
            # newest commits, and checkpoints roll back together with the results they cover.
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("nlpmon_write") else "BEGIN")


def upsert(conn: sa.Connection, table: sa.Table, rows: list[dict], key: tuple[str, ...]) -> None:
    """Insert ``rows``, replacing the row with the same ``key`` where one exists."""
    if not rows:
        return
    # One statement must not touch a key twice (PostgreSQL refuses): the last row for a key wins.
    rows = list({tuple(row[k] for k in key): row for row in rows}.values())
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(key),
            set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key},
        )
        conn.execute(stmt, rows)
        return
    # Any other database: update, and insert where nothing was updated (the transaction makes it safe for
    # the single writer a checkpoint or window has).
    where = [table.c[k] == sa.bindparam(f"k_{k}") for k in key]
    update = sa.update(table).where(*where)
    for row in rows:
        values = {k: v for k, v in row.items() if k not in key}
        params = {f"k_{k}": row[k] for k in key}
        if conn.execute(update.values(**values), params).rowcount == 0:
            conn.execute(sa.insert(table), [row])


def _wal(cursor) -> None:
    """Put the database in WAL mode (it stays so once set). Switching takes a lock for which SQLite does not
    always call the busy handler, so a reader opening the file while the daemon creates it could fail with
    "database is locked": a database already in WAL mode is left alone, and the switch is retried for up to
    the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# PRAGMA auto_vacuum answers 0 (none), 1 (full) or 2 (incremental).
_SQLITE_INCREMENTAL = 2


def release_space(engine: sa.Engine, *, full: bool = False) -> str:
    """Give the pages of deleted rows back to the filesystem (SQLite); return a sentence saying what was done."""
    if engine.dialect.name != "sqlite":
        return f"{engine.dialect.name}: nothing to do, the server's autovacuum makes the space of deleted rows reusable"
    try:
        raw = engine.raw_connection()
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise StoreUnavailable(describe(exc)) from exc
    try:
        # The DB-API connection is in autocommit mode (configure_sqlite): VACUUM refuses to run in a transaction.
        cursor = raw.cursor()
        page = cursor.execute("PRAGMA page_size").fetchone()[0]
        free = cursor.execute("PRAGMA freelist_count").fetchone()[0]
        mode = cursor.execute("PRAGMA auto_vacuum").fetchone()[0]
        if mode == _SQLITE_INCREMENTAL:
            # executescript steps the statement to its end: execute() would step it once, freeing one page.
            cursor.executescript("PRAGMA incremental_vacuum;")
            return f"sqlite: gave back {free} free pages ({free * page} bytes)"
        if full:
            cursor.execute("PRAGMA auto_vacuum = INCREMENTAL")
            cursor.execute("VACUUM")
            return f"sqlite: rewrote the file (VACUUM; {free} free pages, {free * page} bytes, given back); auto_vacuum is incremental from now on"
        return (f"sqlite: {free} free pages ({free * page} bytes) stay in the file and are reused by new rows: it was "
                "created without incremental auto_vacuum; `nlpmon db prune --vacuum` rewrites it once (VACUUM)")
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(f"database unavailable: {exc}") from exc
    finally:
        raw.close()
