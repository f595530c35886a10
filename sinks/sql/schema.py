"""Tables of the SQL store, the schema version they make up, and the upgrade to it (docs/storage.md).

Every timestamp is an integer of epoch milliseconds (UTC), so SQLite and PostgreSQL store and compare them
the same way. Changing a table means: bump :data:`SCHEMA_VERSION` and add the step from the previous version
to :data:`MIGRATIONS`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from sinks.sql.engine import now_ms, transaction

__all__ = [
    "SCHEMA_VERSION", "MIGRATIONS", "SchemaVersionError", "SchemaBehind", "SchemaGate", "stored_version",
    "create_or_upgrade", "behind_message",
    "WINDOW_KEY", "metadata",
    "schema_version", "reference_profiles", "window_results", "drift_events", "window_evidence", "checkpoints",
    "reeval_runs",
    "EXPERIMENT_KEY", "SHADOW_KEY", "experiment_results", "shadow_results", "LABELS_KEY", "label_results",
]

SCHEMA_VERSION = 6

# MIGRATIONS[n] upgrades a version-n database to version n + 1, inside the transaction that records the new
# version. A step alters or backfills existing tables; tables that are new in a version are created after
# the steps by ``metadata.create_all`` from the definitions below.
MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {
    # 1 -> 2 adds the table reeval_runs; nothing existing changes.
    1: lambda conn: None,
    # 2 -> 3 adds the tables experiment_results and shadow_results; nothing existing changes.
    2: lambda conn: None,
    # 3 -> 4 adds `segment` to the key of window_results and drift_events ("" for every existing row).
    3: lambda conn: _add_segment_key(conn),
    # 4 -> 5 adds the table label_results; nothing existing changes.
    4: lambda conn: None,
    # 5 -> 6 adds the table window_evidence; nothing existing changes (older windows have no evidence).
    5: lambda conn: None,
}

# JSON documents: JSONB on PostgreSQL (queryable with ->, ->>), JSON text elsewhere.
_Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_Name = sa.String(255)

metadata = sa.MetaData()

schema_version = sa.Table(
    "nlpmon_schema", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    sa.CheckConstraint("id = 1", name="nlpmon_schema_single_row"),
)

reference_profiles = sa.Table(
    "reference_profiles", metadata,
    sa.Column("model", _Name, primary_key=True),
    sa.Column("profile_version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("profile", _Json, nullable=False),
)
# At most one active profile per model, enforced by the database (a partial unique index on both backends).
sa.Index(
    "reference_profiles_one_active", reference_profiles.c.model, unique=True,
    sqlite_where=reference_profiles.c.active, postgresql_where=reference_profiles.c.active,
)

# A window is identified by its stream (model, version, segment: "" without one), kind, start and, for count
# windows, its sequence number: count windows of a stream can share a start time when events share a
# timestamp. Time windows have window_seq 0.
WINDOW_KEY = ("model", "version", "segment", "window_kind", "window_start_ms", "window_seq")


def _segment_column() -> sa.Column:
    return sa.Column("segment", sa.String(64), primary_key=True, server_default="")


# Columns of every window table; functions because a Column belongs to one table.
def _window_key_columns() -> list[sa.Column]:
    return [
        sa.Column("window_kind", sa.String(16), primary_key=True),
        sa.Column("window_start_ms", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("window_seq", sa.BigInteger, primary_key=True, autoincrement=False),
    ]


def _window_bound_columns() -> list[sa.Column]:
    return [sa.Column("window_end_ms", sa.BigInteger, nullable=False), sa.Column("partial", sa.Boolean, nullable=False)]


window_results = sa.Table(
    "window_results", metadata,
    sa.Column("model", _Name, primary_key=True),
    sa.Column("version", _Name, primary_key=True),
    _segment_column(),
    *_window_key_columns(),
    *_window_bound_columns(),
    sa.Column("drifted", sa.Boolean, nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("result", _Json, nullable=False),
    sa.Index("window_results_model_start", "model", "window_start_ms"),
)

drift_events = sa.Table(
    "drift_events", metadata,
    sa.Column("model", _Name, primary_key=True),
    sa.Column("version", _Name, primary_key=True),
    _segment_column(),
    *_window_key_columns(),
    sa.Column("detector", sa.String(64), primary_key=True),
    # The drifted input feature; "" for a detector that tests the window as a whole.
    sa.Column("feature", _Name, primary_key=True),
    sa.Column("statistic", sa.Double, nullable=True),
    sa.Column("p_value", sa.Double, nullable=True),
    sa.Column("p_value_adjusted", sa.Double, nullable=True),
    sa.Index("drift_events_model_start", "model", "window_start_ms"),
)

# What a person needs to see what changed in a window (docs/evidence.md): one JSON document per window, written
# and pruned with its window_results row. Kept apart from the result: readers of results never load it.
window_evidence = sa.Table(
    "window_evidence", metadata,
    sa.Column("model", _Name, primary_key=True),
    sa.Column("version", _Name, primary_key=True),
    _segment_column(),
    *_window_key_columns(),
    sa.Column("evidence", _Json, nullable=False),
    sa.Index("window_evidence_model_start", "model", "window_start_ms"),
)

checkpoints = sa.Table(
    "checkpoints", metadata,
    sa.Column("group_id", _Name, primary_key=True),
    sa.Column("topic", _Name, primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    # The next offset to consume: every record below it is reflected in `state` and in window_results.
    sa.Column("next_offset", sa.BigInteger, nullable=False),
    # Serialized open-window state of the partition; opaque to the store.
    sa.Column("state", sa.LargeBinary, nullable=True),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
)

# One row per finished re-evaluation run (docs/reeval.md), successful or not; the newest run of a model and
# data set carries the calibration table, the oldest successful one is the default baseline.
reeval_runs = sa.Table(
    "reeval_runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", _Name, nullable=False),
    sa.Column("version", _Name, nullable=False),
    sa.Column("dataset", _Name, nullable=False),
    sa.Column("started_at_ms", sa.BigInteger, nullable=False),
    sa.Column("duration_seconds", sa.Double, nullable=True),
    # What started it: drift, interval, on_demand (POST /reeval), cli.
    sa.Column("trigger", sa.String(32), nullable=False),
    # success, failure or timeout.
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("accuracy", sa.Double, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # The run's result document (ReevalResult.to_dict() plus what the daemon adds); NULL for failed runs.
    sa.Column("result", _Json, nullable=True),
    sa.Index("reeval_runs_model_dataset_started", "model", "dataset", "started_at_ms"),
)

# One row per experiment and closed window (docs/experiments.md); the result is cumulative since the
# experiment started, so the newest row of an experiment is its current state.
EXPERIMENT_KEY = ("experiment", "window_kind", "window_start_ms", "window_seq")

experiment_results = sa.Table(
    "experiment_results", metadata,
    sa.Column("experiment", _Name, primary_key=True),
    *_window_key_columns(),
    sa.Column("model", _Name, nullable=False),
    *_window_bound_columns(),
    sa.Column("samples", sa.BigInteger, nullable=False),
    sa.Column("srm_mismatch", sa.Boolean, nullable=False),
    sa.Column("significant", sa.Boolean, nullable=False),
    sa.Column("degraded", sa.Boolean, nullable=False),
    sa.Column("guardrail_breached", sa.Boolean, nullable=False),
    sa.Column("result", _Json, nullable=False),
)

# One row per served model and closed window of shadow joins (docs/experiments.md, *Shadow mode*).
SHADOW_KEY = ("model", "window_kind", "window_start_ms", "window_seq")

shadow_results = sa.Table(
    "shadow_results", metadata,
    sa.Column("model", _Name, primary_key=True),
    *_window_key_columns(),
    *_window_bound_columns(),
    sa.Column("pairs", sa.BigInteger, nullable=False),
    sa.Column("agreement_rate", sa.Double, nullable=True),
    sa.Column("agreement_low", sa.Boolean, nullable=False),
    sa.Column("result", _Json, nullable=False),
)


def _add_segment_key(conn: sa.Connection) -> None:
    """Rebuild window_results and drift_events with ``segment`` in their primary keys (3 -> 4).

    Neither SQLite nor a portable ALTER can change a primary key, so each table is copied aside, dropped
    (with its indexes and constraint names), created anew from its definition and filled back, all inside
    the migration's transaction: an interrupted upgrade leaves the version-3 database as it was.
    """
    for table in (window_results, drift_events):
        old = [c.name for c in table.columns if c.name != "segment"]
        cols = ", ".join(old)
        aside = f"{table.name}_v3"
        conn.execute(sa.text(f"CREATE TABLE {aside} AS SELECT {cols} FROM {table.name}"))
        conn.execute(sa.text(f"DROP TABLE {table.name}"))
        table.create(conn)
        conn.execute(sa.text(f"INSERT INTO {table.name} ({cols}, segment) SELECT {cols}, '' FROM {aside}"))
        conn.execute(sa.text(f"DROP TABLE {aside}"))


# One row per (model, version) and prediction window whose label period closed (docs/results.md, *Labels
# results*): the realised accuracy from late label events, next to the window's label-free estimate.
LABELS_KEY = ("model", "version", "window_start_ms")

label_results = sa.Table(
    "label_results", metadata,
    sa.Column("model", _Name, primary_key=True),
    sa.Column("version", _Name, primary_key=True),
    sa.Column("window_start_ms", sa.BigInteger, primary_key=True, autoincrement=False),
    *_window_bound_columns(),
    sa.Column("predictions", sa.BigInteger, nullable=False),
    sa.Column("labelled", sa.BigInteger, nullable=False),
    sa.Column("accuracy", sa.Double, nullable=True),
    sa.Column("estimated_accuracy", sa.Double, nullable=True),
    sa.Column("result", _Json, nullable=False),
)


# -- creating and upgrading ---------------------------------------------------------------------------------------

# Serialises concurrent create_or_upgrade() calls on one PostgreSQL database (an arbitrary constant).
_PG_SCHEMA_LOCK_KEY = 0x6E6C706D6F6E  # "nlpmon"


class SchemaVersionError(RuntimeError):
    """The database does not hold the schema this nlpmon writes: newer, or older where it may not upgrade it."""


class SchemaBehind(SchemaVersionError):
    """The database is older than this nlpmon (or empty), and this store may not upgrade it: run ``nlpmon db upgrade``."""


def behind_message(found: int | None, where: str) -> str:
    """One line that says what the database holds and the command that upgrades it."""
    held = "no nlpmon tables" if found is None else f"schema version {found}"
    return (f"the store at {where} holds {held}, this nlpmon needs version {SCHEMA_VERSION}: run "
            f"`nlpmon db upgrade --store '{where}'` as a database user allowed to create and alter tables, or set "
            f"store.auto_upgrade = true (docs/storage.md, *Schema version and upgrades*)")


def _newer_message(found: int, where: str) -> str:
    return (f"the database at {where} has schema version {found}, newer than the {SCHEMA_VERSION} this nlpmon "
            f"knows: upgrade nlpmon (downgrading a database is not supported; see docs/storage.md)")


def stored_version(conn: sa.Connection) -> int | None:
    """Return the schema version recorded in the database, or ``None`` when it has no nlpmon tables."""
    if not sa.inspect(conn).has_table(schema_version.name):
        return None
    return conn.execute(sa.select(schema_version.c.version).where(schema_version.c.id == 1)).scalar()


def create_or_upgrade(conn: sa.Connection, where: str) -> None:
    """Create missing tables and record the version; upgrade an older database; refuse a newer one.

    ``conn`` is a write transaction: a failed step leaves the database at its old version. ``where`` names
    the database in the error.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK_KEY})
    found = stored_version(conn)
    if found is not None and found > SCHEMA_VERSION:
        raise SchemaVersionError(_newer_message(found, where))
    if found is not None:
        for step in range(found, SCHEMA_VERSION):
            MIGRATIONS[step](conn)
    metadata.create_all(conn, checkfirst=True)
    if found is None:
        conn.execute(sa.insert(schema_version).values(id=1, version=SCHEMA_VERSION, updated_at_ms=now_ms()))
    elif found < SCHEMA_VERSION:
        conn.execute(sa.update(schema_version).values(version=SCHEMA_VERSION, updated_at_ms=now_ms()))


class SchemaGate:
    """Makes sure a store's database holds this schema before the store's first operation, once per store.

    A writer's store (``create=True``) creates or upgrades it, or with ``upgrade=False`` (``store.auto_upgrade =
    false``: a database user without DDL rights) only checks that it is current and otherwise raises
    :class:`SchemaBehind`, naming ``nlpmon db upgrade``; a reader's store (the CLI) only checks the version and
    refuses a database without this schema, never creating one.
    """

    def __init__(self, engine: sa.Engine, *, create: bool, name: str, where: str, upgrade: bool = True):
        self._engine, self._create, self._name, self._where = engine, create, name, where
        self._upgrade = upgrade
        self._ready = False
        self._lock = threading.Lock()

    def create(self) -> None:
        """Create missing tables and record the schema version; upgrade an older database; refuse a newer one."""
        with transaction(self._engine, write=True) as conn:
            create_or_upgrade(conn, self._where)
        self._ready = True

    def version(self) -> int | None:
        """Return the schema version recorded in the database, or ``None`` when it has no nlpmon tables."""
        with transaction(self._engine, write=False) as conn:
            return stored_version(conn)

    def ensure(self) -> None:
        """Create, upgrade or check the schema unless that was done already (by this object)."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            if self._create and self._upgrade:
                self.create()
                return
            found = self.version()
            if found is not None and found > SCHEMA_VERSION:
                raise SchemaVersionError(_newer_message(found, self._where))
            if found != SCHEMA_VERSION and self._create:
                raise SchemaBehind(behind_message(found, self._where))
            if found != SCHEMA_VERSION:
                held = "no nlpmon tables" if found is None else f"schema version {found}, not {SCHEMA_VERSION}"
                raise SchemaVersionError(f"{self._name} holds {held} (a read neither creates nor upgrades one)")
            self._ready = True
