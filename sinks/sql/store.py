"""The SQL store's facade: one object that owns the engine and the transactions, in front of the table families.

Each family (:mod:`~sinks.sql.profiles`, :mod:`~sinks.sql.windows`, :mod:`~sinks.sql.experiments`,
:mod:`~sinks.sql.labels`, :mod:`~sinks.sql.reeval`, :mod:`~sinks.sql.checkpoints`) builds and reads its own
rows; the store opens their transactions, and its :meth:`SqlStore.commit` is the one call the daemon's
exactly-once guarantee rests on: the window results a batch produced and the checkpoints (offsets and
open-window state) that cover them are written in a single transaction, so after a crash the store holds
either both or neither. docs/storage.md has the tables and the protocol.

The store is deliberately dumb: it never looks inside a checkpoint's state and never computes anything from a
result beyond the columns it indexes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime

import sqlalchemy as sa

from monitor.results import ExperimentResult, LabelsResult, ShadowResult, WindowEvidence, WindowResult
from sinks.sql import engine as db
from sinks.sql import schema
from sinks.sql.checkpoints import Checkpoints
from sinks.sql.experiments import ExperimentResults
from sinks.sql.labels import LabelResults
from sinks.sql.profiles import ProfileInfo, ReferenceProfiles
from sinks.sql.reeval import ReevalRun, ReevalRuns
from sinks.sql.retention import Retention, RetentionPolicy
from sinks.sql.rows import check_name
from sinks.sql.windows import WindowResults

__all__ = ["DEFAULT_URL", "SqlStore"]

DEFAULT_URL = "sqlite:///nlpmon.db"


class SqlStore:
    """Durable state of nlpmon in a SQL database.

    The constructor does not connect. The schema is created, or checked and upgraded, by
    :meth:`create_schema`, which runs by itself before the first operation that needs the tables. Every call
    that cannot reach the database (server down, connection lost, SQLite file locked past the busy timeout)
    raises :class:`~sinks.sql.StoreUnavailable`; other errors (a bad argument, a constraint violation)
    propagate as they are. One store may be shared by threads.

    The table families are attributes (``profiles``, ``windows``, ``experiments``, ``labels``, ``reeval``,
    ``checkpoints``, and ``retention``, which deletes old rows across them); the methods below are the store's API and hand each call to its family.
    """

    def __init__(self, url: str = DEFAULT_URL, *, echo: bool = False, create: bool = True, upgrade: bool = True):
        self.url = sa.engine.make_url(url)
        self._engine = db.create_engine(self.url, echo=echo)
        # create=False for readers (the CLI): refuse a database without this schema, never create one.
        # upgrade=False for a writer whose user may not alter tables (store.auto_upgrade = false): the schema
        # must be current already, else SchemaBehind names `nlpmon db upgrade`.
        self._schema = schema.SchemaGate(self._engine, create=create, upgrade=upgrade, name=repr(self),
                                         where=self.url.render_as_string(hide_password=True))
        self.profiles = ReferenceProfiles(self.connect)
        self.windows = WindowResults(self.connect)
        self.experiments = ExperimentResults(self.connect)
        self.labels = LabelResults(self.connect)
        self.reeval = ReevalRuns(self.connect)
        self.checkpoints = Checkpoints(self.connect)
        self.retention = Retention(self.connect)

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

    # -- transactions and schema -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def connect(self, *, write: bool) -> Iterator[sa.Connection]:
        """Open a transaction once the schema is ready (what the families read and write through)."""
        self._schema.ensure()
        with db.transaction(self._engine, write=write) as conn:
            yield conn

    def transaction(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """Open a write transaction for composing several writes atomically (committed when the block ends)."""
        return self.connect(write=True)

    def ping(self) -> bool:
        """Return whether the database answers a trivial query now (for readiness probes); never raises."""
        return db.ping(self._engine)

    def create_schema(self) -> None:
        """Create missing tables and record the schema version; upgrade an older database; refuse a newer one.

        Idempotent, and safe to run from several processes at once. Runs by itself before the first operation.
        """
        self._schema.create()

    def schema_version(self) -> int | None:
        """Return the schema version recorded in the database, or ``None`` when it has no nlpmon tables."""
        return self._schema.version()

    def check_schema(self) -> None:
        """Create, upgrade or check the schema now, as the first operation would (raises what it would)."""
        self._schema.ensure()

    # -- retention ---------------------------------------------------------------------------------------------

    def prune_batch(self, policy: RetentionPolicy, *, now_ms: int, batch_rows: int = 500) -> dict[str, int]:
        """Delete at most ``batch_rows`` rows per table older than ``policy`` (:meth:`Retention.prune_batch`)."""
        return self.retention.prune_batch(policy, now_ms=now_ms, batch_rows=batch_rows)

    def release_space(self, *, full: bool = False) -> str:
        """Give the space of deleted rows back to the filesystem where the database can (SQLite); say what was done.

        ``full`` rewrites a SQLite file whose ``auto_vacuum`` is not incremental (``VACUUM``, which needs the
        file's size free again and the write lock throughout) and makes it incremental from then on.
        """
        return db.release_space(self._engine, full=full)

    # -- the one exactly-once transaction ----------------------------------------------------------------------

    def commit(
        self,
        group_id: str,
        *,
        results: Iterable[WindowResult],
        checkpoints: Mapping[tuple[str, int], tuple[int, bytes | None]],
        expected_offsets: Mapping[tuple[str, int], int | None] | None = None,
        before_commit: Callable[[], None] | None = None,
        experiment_results: Iterable[ExperimentResult] = (),
        shadow_results: Iterable[ShadowResult] = (),
        label_results: Iterable[LabelsResult] = (),
    ) -> None:
        """Write window results, their drift events and partition checkpoints in ONE transaction.

        ``experiment_results``, ``shadow_results`` (docs/experiments.md) and ``label_results`` (sinks.sql.labels)
        closed by the same records join that transaction, so they are exactly-once like the window results.

        ``checkpoints`` maps ``(topic, partition)`` to ``(next_offset, state)``: the next offset to consume
        and the serialized open-window state once every record before it is accounted for. Either everything
        is stored or, when anything fails, nothing is.

        ``expected_offsets`` fences out a consumer that lost its partitions without noticing (a "zombie"
        after a session timeout): it maps a partition to the ``next_offset`` its checkpoint must still have
        (``None``: it must have none), normally the value this consumer loaded or last committed. When any
        differs, nothing is written and :class:`~sinks.sql.CheckpointConflict` is raised.

        ``before_commit`` is called after every write, just before COMMIT (fault injection for crash tests).
        """
        check_name("group_id", group_id)
        # Every row is built, and so every result checked, before the transaction opens.
        windows = self.windows.rows(results)
        experiments = self.experiments.experiment_rows(experiment_results)
        shadow = self.experiments.shadow_rows(shadow_results)
        checkpoint_rows = self.checkpoints.rows(group_id, checkpoints)
        labels = self.labels.rows(label_results)
        expected = {(tp[0], int(tp[1])): offset for tp, offset in (expected_offsets or {}).items()}
        with self.transaction() as conn:
            self.checkpoints.write(conn, group_id, checkpoint_rows, expected)  # first: the fence
            self.windows.write(conn, windows)
            self.experiments.write_experiments(conn, experiments)
            self.experiments.write_shadow(conn, shadow)
            self.labels.write(conn, labels)
            if before_commit is not None:  # fault injection for crash tests: everything written, nothing committed
                before_commit()

    # -- writes that join a caller's transaction (``conn``) or get their own (``None``) ------------------------

    def upsert_window_results(self, conn: sa.Connection | None, results: Iterable[WindowResult]) -> None:
        """Insert or replace window results and their drift events, keyed by stream and window.

        With ``conn`` (from :meth:`transaction`) the writes join that transaction; with ``None`` they get
        their own. Writing the same result twice leaves one row, so a replayed batch is harmless.
        """
        self._write(conn, self.windows.write, self.windows.rows(results))

    def upsert_experiment_results(self, conn: sa.Connection | None, results: Iterable[ExperimentResult]) -> None:
        """Insert or replace experiment results (docs/experiments.md), keyed by experiment and window."""
        self._write(conn, self.experiments.write_experiments, self.experiments.experiment_rows(results))

    def upsert_shadow_results(self, conn: sa.Connection | None, results: Iterable[ShadowResult]) -> None:
        """Insert or replace shadow-join results, keyed by served model and window."""
        self._write(conn, self.experiments.write_shadow, self.experiments.shadow_rows(results))

    def _write(self, conn: sa.Connection | None, write: Callable[[sa.Connection, object], None], rows) -> None:
        if conn is not None:
            write(conn, rows)
            return
        with self.transaction() as own:
            write(own, rows)

    # -- the families' other calls -------------------------------------------------------------------------------

    def save_profile(self, model: str, profile_json: dict, *, activate: bool) -> int:
        """Store a new version of ``model``'s reference profile and return its version (1, 2, ...)."""
        return self.profiles.save(model, profile_json, activate=activate)

    def activate_profile(self, model: str, version: int) -> None:
        """Make profile ``version`` the active reference of ``model`` (and no other)."""
        self.profiles.activate(model, version)

    def active_profile(self, model: str) -> dict | None:
        """Return the active reference profile of ``model``, or ``None`` when it has none."""
        return self.profiles.active(model)

    def active_profiles(self) -> dict[str, dict]:
        """Return ``{model: profile}`` for every model that has an active reference profile."""
        return self.profiles.all_active()

    def list_profiles(self, model: str) -> list[ProfileInfo]:
        """Return every stored profile of ``model``, oldest version first."""
        return self.profiles.versions(model)

    def load_checkpoints(
        self, group_id: str, topic_partitions: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[int, bytes | None]]:
        """Return ``{(topic, partition): (next_offset, state)}`` for those of the partitions that have one."""
        return self.checkpoints.load(group_id, topic_partitions)

    def history(
        self, model: str, version: str | None = None, *, since: datetime | str | int | None = None,
        limit: int | None = None, segment: str | None = None,
    ) -> list[dict]:
        """Return stored window results of ``model``, ordered by window start.

        ``version`` keeps one model version, ``segment`` one segment ("": the segment-less stream); ``since``
        windows starting at or after it: an aware datetime, an RFC 3339 string, or epoch seconds or milliseconds
        (a number or digits; below 10^11 seconds, as for event timestamps in docs/events.md); ``limit`` the newest.
        """
        return self.windows.history(model, version, since=since, limit=limit, segment=segment)

    def streams(self) -> list[tuple[str, str]]:
        """Return every (model, version) with a stored window result, sorted."""
        return self.windows.streams()

    def window_evidence(
        self, model: str, version: str | None = None, *, segment: str | None = None,
        since: datetime | str | int | None = None, until: datetime | str | int | None = None, limit: int | None = None,
    ) -> list[tuple[dict, WindowEvidence | None]]:
        """Return stored windows of ``model`` as (result JSON, evidence or ``None``), ordered by window start.

        Arguments as in :meth:`history`; ``until`` keeps windows starting before it (docs/evidence.md).
        """
        return self.windows.with_evidence(model, version, segment=segment, since=since, until=until, limit=limit)

    def experiment_results(
        self, experiment: str, *, since: datetime | str | int | None = None, limit: int | None = None
    ) -> list[dict]:
        """Return stored results of ``experiment`` oldest first; ``since``/``limit`` as in :meth:`history`.

        Each result is cumulative since the experiment started, so the last one is its current state.
        """
        return self.experiments.experiment_results(experiment, since=since, limit=limit)

    def shadow_results(
        self, model: str, *, since: datetime | str | int | None = None, limit: int | None = None
    ) -> list[dict]:
        """Return stored shadow-join results of served ``model``, oldest first."""
        return self.experiments.shadow_results(model, since=since, limit=limit)

    def experiment_names(self) -> list[str]:
        """Return the names of every experiment with a stored result, sorted."""
        return self.experiments.names()

    def save_reeval_run(self, **run) -> int:
        """Store one finished re-evaluation run and return its id (arguments: :meth:`ReevalRuns.save`)."""
        return self.reeval.save(**run)

    def reeval_runs(self, model: str | None = None, **filters) -> list[ReevalRun]:
        """Return stored re-evaluation runs (filters and order: :meth:`ReevalRuns.runs`)."""
        return self.reeval.runs(model, **filters)
