"""The SQL store: reference profiles, window results, drift events, checkpoints, re-evaluation runs, experiments.

Any SQLAlchemy URL works; SQLite (the default, ``sqlite:///nlpmon.db``) and PostgreSQL (``postgresql+psycopg://``)
are tested. :class:`SqlStore` (``store``) is the facade that owns the engine and the transactions; each table
family owns its rows: ``profiles``, ``windows`` (window results and drift events), ``experiments`` (and shadow
joins), ``labels``, ``reeval``, ``checkpoints``, and ``retention`` deletes old rows across them. ``schema`` holds the tables, the schema version and its
migrations, ``engine`` the dialect settings, transactions and upsert, ``rows`` what the families share.
docs/storage.md has the tables and the exactly-once protocol.
"""

from sinks.sql.checkpoints import CheckpointConflict
from sinks.sql.engine import StoreUnavailable
from sinks.sql.profiles import ProfileInfo, ProfileNotFound
from sinks.sql.reeval import REEVAL_OUTCOMES, ReevalRun
from sinks.sql.retention import RetentionPolicy
from sinks.sql.schema import SchemaBehind, SchemaVersionError
from sinks.sql.store import DEFAULT_URL, SqlStore

__all__ = [
    "DEFAULT_URL", "SqlStore", "StoreUnavailable", "SchemaVersionError", "SchemaBehind", "RetentionPolicy",
    "CheckpointConflict", "ProfileNotFound",
    "ProfileInfo", "ReevalRun", "REEVAL_OUTCOMES",
]
