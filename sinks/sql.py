"""The SQL store: reference profiles, window results, drift events, checkpoints, re-evaluation runs, experiments.

Any SQLAlchemy URL works; SQLite (the default, ``sqlite:///nlpmon.db``) and PostgreSQL (``postgresql+psycopg://``)
are tested. The one call the daemon's exactly-once guarantee rests on is :meth:`SqlStore.commit`: the window
results a batch produced and the checkpoints (offsets and open-window state) that cover them are written in a
single transaction, so after a crash the store holds either both or neither. docs/storage.md has the tables
and the protocol.

The store is deliberately dumb: it never looks inside a checkpoint's state and never computes anything from a
result beyond the columns it indexes.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import orjson
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from monitor.results import ExperimentResult, ShadowResult, WindowResult
from sinks import sql_labels, sql_schema as tables
from sinks.sql_engine import PG_CONNECT_DEFAULTS, configure_sqlite, describe, json_dumps, upsert
from sinks.sql_engine import now_ms as _now_ms
from sinks.sql_rows import check_name as _check_name
from sinks.sql_rows import checkpoint_rows as _checkpoint_rows
from sinks.sql_rows import experiment_rows as _experiment_rows
from sinks.sql_rows import float_or_none as _float_or_none
from sinks.sql_rows import result_rows as _result_rows
from sinks.sql_rows import shadow_rows as _shadow_rows
from sinks.sql_schema import EXPERIMENT_KEY, MIGRATIONS, SCHEMA_VERSION, SHADOW_KEY, WINDOW_KEY

__all__ = [
    "DEFAULT_URL", "SqlStore", "StoreUnavailable", "SchemaVersionError", "CheckpointConflict", "ProfileNotFound",
    "ProfileInfo", "ReevalRun", "REEVAL_OUTCOMES",
]

DEFAULT_URL = "sqlite:///nlpmon.db"

# Serialises concurrent create_schema() calls on one PostgreSQL database (an arbitrary constant).
_PG_SCHEMA_LOCK_KEY = 0x6E6C706D6F6E  # "nlpmon"
_CHECKPOINT_KEY = ("group_id", "topic", "partition")
REEVAL_OUTCOMES = ("success", "failure", "timeout")


class StoreUnavailable(Exception):
    """The database cannot be reached or is locked right now; back off and retry."""


class SchemaVersionError(RuntimeError):
    """The database was written by a newer nlpmon, whose tables this version does not know."""


class CheckpointConflict(Exception):
    """Another consumer moved a partition's checkpoint: this one no longer owns the partition.

    ``partitions`` maps each conflicting ``(topic, partition)`` to ``(expected, found)``.
    """

    def __init__(self, partitions: dict[tuple[str, int], tuple[object, object]]):
        self.partitions = partitions
        detail = ", ".join(f"{t}[{p}]: expected {e}, found {f}" for (t, p), (e, f) in sorted(partitions.items()))
        super().__init__(f"checkpoint moved by another consumer: {detail}")


class ProfileNotFound(LookupError):
    """No reference profile with that model and version."""


@dataclass(frozen=True, slots=True)
class ProfileInfo:
    """A stored reference profile, without its (possibly large) body."""

    model: str
    version: int
    active: bool
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class ReevalRun:
    """A stored re-evaluation run (table ``reeval_runs``); ``result`` is ``None`` for a failed run."""

    id: int
    model: str
    version: str
    dataset: str
    started_at_ms: int
    duration_seconds: float | None
    trigger: str
    outcome: str
    accuracy: float | None
    error: str | None
    result: dict | None


class SqlStore:
    """Durable state of nlpmon in a SQL database.

    The constructor does not connect. The schema is created, or checked and upgraded, by
    :meth:`create_schema`, which runs by itself before the first operation that needs the tables. Every call
    that cannot reach the database (server down, connection lost, SQLite file locked past the busy timeout)
    raises :class:`StoreUnavailable`; other errors (a bad argument, a constraint violation) propagate as they
    are. One store may be shared by threads.
    """

    def __init__(self, url: str = DEFAULT_URL, *, echo: bool = False, create: bool = True):
        self._create = create  # False for readers (the CLI): refuse a database without this schema, never create
        self.url = sa.engine.make_url(url)
        backend = self.url.get_backend_name()
        kwargs: dict = {"echo": echo, "json_serializer": json_dumps, "json_deserializer": orjson.loads}
        if backend == "postgresql" and self.url.get_driver_name() in ("psycopg", "psycopg2"):
            kwargs["connect_args"] = {k: v for k, v in PG_CONNECT_DEFAULTS.items() if k not in self.url.query}
        if backend != "sqlite":
            kwargs["pool_pre_ping"] = True
        self._engine = sa.create_engine(self.url, **kwargs)
        if backend == "sqlite":
            configure_sqlite(self._engine, in_memory=self.url.database in (None, "", ":memory:"))
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqlStore({self.url.render_as_string(hide_password=True)!r})"

    # -- connections -------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sa.Connection]:
        try:
            with self._engine.connect() as conn:
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

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """Open a write transaction for composing several writes atomically (committed when the block ends)."""
        self._ensure_schema()
        with self._transaction(write=True) as conn:
            yield conn

    def ping(self) -> bool:
        """Return whether the database answers a trivial query now (for readiness probes); never raises."""
        try:
            with self._engine.connect() as conn:
                conn.execute(sa.select(1))
            return True
        except Exception:
            return False

    # -- schema ------------------------------------------------------------------------------------------------

    def create_schema(self) -> None:
        """Create missing tables and record the schema version; upgrade an older database; refuse a newer one.

        Idempotent, and safe to run from several processes at once.
        """
        with self._transaction(write=True) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK_KEY})
            found = _stored_version(conn)
            if found is not None and found > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"the database at {self.url.render_as_string(hide_password=True)} has schema version "
                    f"{found}, newer than the {SCHEMA_VERSION} this nlpmon knows: upgrade nlpmon (downgrading "
                    f"a database is not supported; see docs/storage.md)"
                )
            if found is not None:
                for step in range(found, SCHEMA_VERSION):
                    MIGRATIONS[step](conn)
            tables.metadata.create_all(conn, checkfirst=True)
            now = _now_ms()
            if found is None:
                conn.execute(sa.insert(tables.schema_version).values(id=1, version=SCHEMA_VERSION, updated_at_ms=now))
            elif found < SCHEMA_VERSION:
                conn.execute(sa.update(tables.schema_version).values(version=SCHEMA_VERSION, updated_at_ms=now))
        self._schema_ready = True

    def schema_version(self) -> int | None:
        """Return the schema version recorded in the database, or ``None`` when it has no nlpmon tables."""
        with self._transaction(write=False) as conn:
            return _stored_version(conn)

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._create and not self._schema_ready:
                self.create_schema()
            elif not self._schema_ready:
                found = self.schema_version()
                if found != SCHEMA_VERSION:
                    held = "no nlpmon tables" if found is None else f"schema version {found}, not {SCHEMA_VERSION}"
                    raise SchemaVersionError(f"{self!r} holds {held} (a read neither creates nor upgrades one)")
                self._schema_ready = True

    # -- reference profiles ------------------------------------------------------------------------------------

    def save_profile(self, model: str, profile_json: dict, *, activate: bool) -> int:
        """Store a new version of ``model``'s reference profile and return its version (1, 2, ...)."""
        _check_name("model", model)
        if not isinstance(profile_json, Mapping):
            raise TypeError("profile_json must be a dict")
        self._ensure_schema()
        t = tables.reference_profiles.c
        for attempt in range(3):
            try:
                with self._transaction(write=True) as conn:
                    latest = conn.execute(sa.select(sa.func.max(t.profile_version)).where(t.model == model)).scalar()
                    version = (latest or 0) + 1
                    if activate:
                        conn.execute(sa.update(tables.reference_profiles)
                                     .where(t.model == model, t.active).values(active=False))
                    conn.execute(sa.insert(tables.reference_profiles).values(
                        model=model, profile_version=version, active=bool(activate), created_at_ms=_now_ms(),
                        profile=dict(profile_json),
                    ))
                    return version
            except sa_exc.IntegrityError:
                # Another writer took the same version number (PostgreSQL, concurrent saves): take the next.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def activate_profile(self, model: str, version: int) -> None:
        """Make profile ``version`` the active reference of ``model`` (and no other)."""
        self._ensure_schema()
        t = tables.reference_profiles.c
        with self._transaction(write=True) as conn:
            exists = conn.execute(
                sa.select(t.active).where(t.model == model, t.profile_version == version)
            ).first()
            if exists is None:
                raise ProfileNotFound(f"model {model!r} has no reference profile version {version}")
            # Two statements, the deactivation first: the unique index allows one active row at every step.
            conn.execute(sa.update(tables.reference_profiles)
                         .where(t.model == model, t.active, t.profile_version != version).values(active=False))
            conn.execute(sa.update(tables.reference_profiles)
                         .where(t.model == model, t.profile_version == version).values(active=True))

    def active_profile(self, model: str) -> dict | None:
        """Return the active reference profile of ``model``, or ``None`` when it has none."""
        self._ensure_schema()
        t = tables.reference_profiles.c
        with self._transaction(write=False) as conn:
            return conn.execute(sa.select(t.profile).where(t.model == model, t.active)).scalar()

    def active_profiles(self) -> dict[str, dict]:
        """Return ``{model: profile}`` for every model that has an active reference profile."""
        self._ensure_schema()
        t = tables.reference_profiles.c
        with self._transaction(write=False) as conn:
            return {row.model: row.profile for row in conn.execute(sa.select(t.model, t.profile).where(t.active))}

    def list_profiles(self, model: str) -> list[ProfileInfo]:
        """Return every stored profile of ``model``, oldest version first."""
        self._ensure_schema()
        t = tables.reference_profiles.c
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                sa.select(t.model, t.profile_version, t.active, t.created_at_ms)
                .where(t.model == model).order_by(t.profile_version)
            ).all()
        return [ProfileInfo(r.model, r.profile_version, bool(r.active), r.created_at_ms) for r in rows]

    # -- window results and checkpoints ------------------------------------------------------------------------

    def upsert_window_results(self, conn: sa.Connection | None, results: Iterable[WindowResult]) -> None:
        """Insert or replace window results and their drift events, keyed by stream and window.

        With ``conn`` (from :meth:`transaction`) the writes join that transaction; with ``None`` they get
        their own. Writing the same result twice leaves one row, so a replayed batch is harmless.
        """
        rows, events = _result_rows(results)
        if conn is not None:
            self._write_results(conn, rows, events)
            return
        with self.transaction() as own:
            self._write_results(own, rows, events)

    def commit(
        self,
        group_id: str,
        *,
        results: Iterable[WindowResult],
        checkpoints: Mapping[tuple[str, int], tuple[int, bytes | None]],
        expected_offsets: Mapping[tuple[str, int], int | None] | None = None,
        before_commit: Callable[[], None] | None = None,
        experiment_results: Iterable[ExperimentResult] = (), shadow_results: Iterable[ShadowResult] = (), label_results: Iterable = (),
    ) -> None:
        """Write window results, their drift events and partition checkpoints in ONE transaction.

        ``experiment_results``, ``shadow_results`` (docs/experiments.md) and ``label_results`` (sinks.sql_labels)
        closed by the same records join that transaction, so they are exactly-once like the window results.

        ``checkpoints`` maps ``(topic, partition)`` to ``(next_offset, state)``: the next offset to consume
        and the serialized open-window state once every record before it is accounted for. Either everything
        is stored or, when anything fails, nothing is.

        ``expected_offsets`` fences out a consumer that lost its partitions without noticing (a "zombie"
        after a session timeout): it maps a partition to the ``next_offset`` its checkpoint must still have
        (``None``: it must have none), normally the value this consumer loaded or last committed. When any
        differs, nothing is written and :class:`CheckpointConflict` is raised.

        ``before_commit`` is called after every write, just before COMMIT (fault injection for crash tests).
        """
        _check_name("group_id", group_id)
        rows, events = _result_rows(results)
        exp_rows, shadow_rows = _experiment_rows(experiment_results), _shadow_rows(shadow_results)
        checkpoint_rows = _checkpoint_rows(group_id, checkpoints)
        expected = {(tp[0], int(tp[1])): offset for tp, offset in (expected_offsets or {}).items()}
        with self.transaction() as conn:
            if expected:
                _check_expected(conn, group_id, expected)
                # A first checkpoint is a plain INSERT, so that of two consumers racing to write it the second
                # fails on the primary key instead of overwriting the first.
                is_first = [(r["topic"], r["partition"]) in expected and expected[(r["topic"], r["partition"])] is None
                            for r in checkpoint_rows]
                first = [r for r, f in zip(checkpoint_rows, is_first) if f]
                checkpoint_rows = [r for r, f in zip(checkpoint_rows, is_first) if not f]
                if first:
                    try:
                        conn.execute(sa.insert(tables.checkpoints), first)
                    except sa_exc.IntegrityError:
                        raise CheckpointConflict({(r["topic"], r["partition"]): (None, "written meanwhile")
                                                  for r in first}) from None
            upsert(conn, tables.checkpoints, checkpoint_rows, _CHECKPOINT_KEY)
            self._write_results(conn, rows, events)
            upsert(conn, tables.experiment_results, exp_rows, EXPERIMENT_KEY)
            upsert(conn, tables.shadow_results, shadow_rows, SHADOW_KEY)
            sql_labels.upsert_label_results(conn, label_results)
            if before_commit is not None:  # fault injection for crash tests: everything written, nothing committed
                before_commit()

    def load_checkpoints(
        self, group_id: str, topic_partitions: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[int, bytes | None]]:
        """Return ``{(topic, partition): (next_offset, state)}`` for those of the partitions that have one."""
        wanted = {(tp[0], int(tp[1])) for tp in topic_partitions}
        if not wanted:
            return {}
        self._ensure_schema()
        t = tables.checkpoints.c
        topics = sorted({topic for topic, _ in wanted})
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                sa.select(t.topic, t.partition, t.next_offset, t.state)
                .where(t.group_id == group_id, t.topic.in_(topics))
            ).all()
        return {
            (r.topic, r.partition): (r.next_offset, None if r.state is None else bytes(r.state))
            for r in rows if (r.topic, r.partition) in wanted
        }

    def history(
        self,
        model: str,
        version: str | None = None,
        since: datetime | str | int | None = None,
        limit: int | None = None, segment: str | None = None,
    ) -> list[dict]:
        """Return stored window results of ``model``, ordered by window start.

        ``version`` keeps one model version, ``segment`` one segment ("": the segment-less stream); ``since``
        windows starting at or after it: an aware datetime, an RFC 3339 string, or epoch seconds or milliseconds
        (a number or digits; below 10^11 seconds, as for event timestamps in docs/events.md); ``limit`` the newest.
        """
        t = tables.window_results.c
        where = sa.and_(t.model == model, *(getattr(t, k) == v for k, v in (("version", version), ("segment", segment))
                                            if v is not None))
        return self._window_docs(tables.window_results, where, since, limit, tiebreak=(t.version, t.segment))

    # -- experiments and shadow joins --------------------------------------------------------------------------

    def upsert_experiment_results(self, conn: sa.Connection | None, results: Iterable[ExperimentResult]) -> None:
        """Insert or replace experiment results (docs/experiments.md), keyed by experiment and window."""
        self._upsert_own(conn, tables.experiment_results, _experiment_rows(results), EXPERIMENT_KEY)

    def upsert_shadow_results(self, conn: sa.Connection | None, results: Iterable[ShadowResult]) -> None:
        """Insert or replace shadow-join results, keyed by served model and window."""
        self._upsert_own(conn, tables.shadow_results, _shadow_rows(results), SHADOW_KEY)

    def _upsert_own(self, conn, table, rows, key) -> None:
        if conn is not None:
            upsert(conn, table, rows, key)
            return
        with self.transaction() as own:
            upsert(own, table, rows, key)

    def experiment_results(
        self, experiment: str, *, since: datetime | str | int | None = None, limit: int | None = None
    ) -> list[dict]:
        """Return stored results of ``experiment`` oldest first; ``since``/``limit`` as in :meth:`history`.

        Each result is cumulative since the experiment started, so the last one is its current state.
        """
        return self._window_docs(tables.experiment_results, tables.experiment_results.c.experiment == experiment,
                                 since, limit)

    def shadow_results(
        self, model: str, *, since: datetime | str | int | None = None, limit: int | None = None
    ) -> list[dict]:
        """Return stored shadow-join results of served ``model``, oldest first."""
        return self._window_docs(tables.shadow_results, tables.shadow_results.c.model == model, since, limit)

    def streams(self) -> list[tuple[str, str]]:
        """Return every (model, version) with a stored window result, sorted."""
        self._ensure_schema()
        t = tables.window_results.c
        with self._transaction(write=False) as conn:
            return [tuple(r) for r in conn.execute(sa.select(t.model, t.version).distinct().order_by(t.model, t.version))]

    def experiment_names(self) -> list[str]:
        """Return the names of every experiment with a stored result, sorted."""
        self._ensure_schema()
        t = tables.experiment_results.c
        with self._transaction(write=False) as conn:
            return list(conn.execute(sa.select(t.experiment).distinct().order_by(t.experiment)).scalars())

    def _window_docs(self, table: sa.Table, where, since, limit, tiebreak: tuple = ()) -> list[dict]:
        """Result documents of ``table`` matching ``where``, oldest window first (``limit``: the newest ones)."""
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        self._ensure_schema()
        t = table.c
        query = sa.select(t.result).where(where)
        if since is not None:
            query = query.where(t.window_start_ms >= _to_ms(since, "since"))
        order = (t.window_start_ms, *tiebreak, t.window_kind, t.window_seq)
        if limit is None:
            query = query.order_by(*order)
        else:
            query = query.order_by(*(c.desc() for c in order)).limit(limit)
        with self._transaction(write=False) as conn:
            found = list(conn.execute(query).scalars())
        return found if limit is None else found[::-1]

    # -- re-evaluation runs ------------------------------------------------------------------------------------

    def save_reeval_run(
        self,
        *,
        model: str,
        version: str,
        dataset: str,
        started_at_ms: int,
        trigger: str,
        outcome: str,
        result: Mapping | None = None,
        error: str | None = None,
        duration_seconds: float | None = None,
    ) -> int:
        """Store one finished re-evaluation run and return its id (increasing with every save).

        ``result`` is the run's JSON document (``ReevalResult.to_dict()``); its ``accuracy`` is copied into
        the indexed column. ``outcome`` is one of :data:`REEVAL_OUTCOMES`.
        """
        for what, value in (("model", model), ("version", version), ("dataset", dataset), ("trigger", trigger)):
            _check_name(what, value)
        if outcome not in REEVAL_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(REEVAL_OUTCOMES)}, got {outcome!r}")
        if isinstance(started_at_ms, bool) or not isinstance(started_at_ms, int):
            raise TypeError("started_at_ms must be an integer of epoch milliseconds")
        if result is not None and not isinstance(result, Mapping):
            raise TypeError("result must be a dict or None")
        self._ensure_schema()
        row = {
            "model": model, "version": version, "dataset": dataset, "started_at_ms": started_at_ms,
            "duration_seconds": _float_or_none(duration_seconds), "trigger": trigger, "outcome": outcome,
            "accuracy": _float_or_none(result.get("accuracy")) if result is not None else None,
            "error": error, "result": dict(result) if result is not None else None,
        }
        with self._transaction(write=True) as conn:
            return int(conn.execute(sa.insert(tables.reeval_runs).values(**row)).inserted_primary_key[0])

    def reeval_runs(
        self,
        model: str | None = None,
        *,
        version: str | None = None,
        dataset: str | None = None,
        outcome: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[ReevalRun]:
        """Return stored re-evaluation runs, oldest first (``newest_first``: newest first), filtered by the
        given columns; ``limit`` keeps the first ``limit`` of that order.

        ``reeval_runs(model, dataset=d, outcome="success", limit=1)`` is the default baseline of a model.
        """
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        self._ensure_schema()
        t = tables.reeval_runs.c
        query = sa.select(tables.reeval_runs)
        for column, value in (("model", model), ("version", version), ("dataset", dataset), ("outcome", outcome)):
            if value is not None:
                query = query.where(t[column] == value)
        order = (t.started_at_ms, t.id)
        query = query.order_by(*(c.desc() for c in order) if newest_first else order)
        if limit is not None:
            query = query.limit(limit)
        with self._transaction(write=False) as conn:
            rows = conn.execute(query).all()
        return [
            ReevalRun(r.id, r.model, r.version, r.dataset, r.started_at_ms, r.duration_seconds, r.trigger,
                      r.outcome, r.accuracy, r.error, r.result)
            for r in rows
        ]  # fmt: skip

    def _write_results(self, conn: sa.Connection, rows: list[dict], events: list[dict]) -> None:
        if not rows:
            return
        upsert(conn, tables.window_results, rows, WINDOW_KEY)
        # Replace, not merge, the drift events of each window: a re-evaluated window may drift on fewer features.
        t = tables.drift_events.c
        conn.execute(
            sa.delete(tables.drift_events).where(*(getattr(t, k) == sa.bindparam(f"k_{k}") for k in WINDOW_KEY)),
            [{f"k_{k}": row[k] for k in WINDOW_KEY} for row in rows],
        )
        if events:
            conn.execute(sa.insert(tables.drift_events), events)


# -- helpers -----------------------------------------------------------------------------------------------------


def _stored_version(conn: sa.Connection) -> int | None:
    if not sa.inspect(conn).has_table(tables.schema_version.name):
        return None
    return conn.execute(sa.select(tables.schema_version.c.version).where(tables.schema_version.c.id == 1)).scalar()


def _check_expected(conn: sa.Connection, group_id: str, expected: dict[tuple[str, int], int | None]) -> None:
    t = tables.checkpoints.c
    # FOR UPDATE holds the rows until commit, so a concurrent commit for the same partitions waits for this
    # one and then sees its offsets (PostgreSQL); SQLite's BEGIN IMMEDIATE already serialises writers.
    rows = conn.execute(
        sa.select(t.topic, t.partition, t.next_offset)
        .where(t.group_id == group_id, t.topic.in_(sorted({topic for topic, _ in expected})))
        .with_for_update()
    ).all()
    stored = {(r.topic, r.partition): r.next_offset for r in rows}
    conflicts = {tp: (offset, stored.get(tp)) for tp, offset in expected.items() if stored.get(tp) != offset}
    if conflicts:
        raise CheckpointConflict(conflicts)


# Epoch numbers below this are seconds, at or above it milliseconds (the rule of docs/events.md).
_SECONDS_LIMIT = 100_000_000_000


def _to_ms(value: datetime | str | int | float, what: str) -> int:
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str | datetime):
        raise TypeError(f"{what} must be a datetime, an RFC 3339 string or an epoch number")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{what} is not finite")
        return int(round(value * 1000 if abs(value) < _SECONDS_LIMIT else value))
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{what} is not an RFC 3339 timestamp or an epoch number") from None
    if value.tzinfo is None:
        raise ValueError(f"{what} needs a timezone")
    return int(round(value.timestamp() * 1000))


