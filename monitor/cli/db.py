"""``nlpmon db``: the SQL store's schema (``status``, ``upgrade``) and retention (``prune``), for operators and Jobs.

``upgrade`` is the explicit schema step a DBA runs with a user allowed to create and alter tables, so the
daemon can run with ``store.auto_upgrade = false`` and a user that only reads and writes rows
(docs/storage.md, *Schema version and upgrades*). ``prune`` deletes old results in bounded batches, each in its
own transaction, so it can run next to a live daemon and be killed at any point (docs/storage.md, *Retention*).
"""

from __future__ import annotations

import sys
import time

from monitor.cli.common import EXIT_OK, UsageError, add_config_flags, command_group, config_from_args, open_store, parse_duration_ms

__all__ = ["add_parsers", "cmd_status", "cmd_upgrade", "cmd_prune", "EXIT_SCHEMA_BEHIND"]

# `nlpmon db status` when the database is older than this nlpmon, or has no nlpmon tables.
EXIT_SCHEMA_BEHIND = 3

_DAY_MS = 86_400_000


def add_parsers(sub) -> None:
    """Register ``db status``, ``db upgrade`` and ``db prune`` on an ``argparse`` subparsers object."""
    db = command_group(sub, "db", help="show, upgrade or prune the SQL store",
                       description="The SQL store's schema and retention (docs/storage.md).")
    status = db.add_parser(
        "status", help="print the store's schema version and whether it needs an upgrade",
        description="Print the schema version stored in the database and the one this nlpmon needs. Reads only. "
        f"Exit 0 when they match, {EXIT_SCHEMA_BEHIND} when the database is older or has no nlpmon tables "
        "(run `nlpmon db upgrade`), 2 when it is newer or cannot be reached.",
    )
    _store_flags(status)
    status.set_defaults(func=cmd_status)
    upgrade = db.add_parser(
        "upgrade", help="create or upgrade the store's schema (needs DDL rights)",
        description="Create nlpmon's tables in an empty database, or upgrade an older schema to this nlpmon's, in "
        "one transaction (a failure leaves the old version). Needs a database user allowed to create and alter "
        "tables; safe to run while daemons of the same version run, and more than once. Stop older daemons first "
        "and back the database up (docs/storage.md).",
    )
    _store_flags(upgrade)
    upgrade.set_defaults(func=cmd_upgrade)
    _add_prune(db)


def _add_prune(db) -> None:
    prune = db.add_parser(
        "prune", help="delete stored results older than a duration, in batches",
        description="Delete window results (with their drift events), experiment and shadow results older than "
        "--older-than, label results older than --labels-older-than and re-evaluation runs older than "
        "--reeval-older-than; each defaults to its store.*retention_days key of the config, and a family "
        "without either is kept. Deletes at most --batch-rows rows per table in each transaction and prints "
        "each batch, so it can run beside a live daemon and be stopped at any point: a rerun finishes the job. "
        "Never deletes checkpoints, reference profiles, the oldest and newest successful re-evaluation run "
        "of a model and data set, or the newest row of an experiment. On SQLite, the freed space is then "
        "given back to the filesystem (see --vacuum).",
    )
    for flag, key in (("--older-than", "retention_days"), ("--labels-older-than", "labels_retention_days"),
                      ("--reeval-older-than", "reeval_retention_days")):
        prune.add_argument(flag, metavar="DURATION", help=f"e.g. 30d, 12w, 36h (default: store.{key} days)")
    prune.add_argument("--batch-rows", type=int, default=5000, metavar="N",
                       help="rows per table and transaction (default 5000)")
    prune.add_argument("--vacuum", action="store_true",
                       help="SQLite: rewrite a file created without incremental auto_vacuum (VACUUM: needs free "
                       "disk space of the file's size and blocks writers meanwhile; stop the daemon first)")
    _store_flags(prune)
    prune.set_defaults(func=cmd_prune)


def _store_flags(p) -> None:
    p.add_argument("--store", metavar="URL", help="SQL store URL (default: store.url of the config)")
    add_config_flags(p)


def _config(args):
    return config_from_args(args, {"source.kind": "stdin"})


def _url(args) -> str:
    return args.store or _config(args).store.url


def cmd_status(args) -> int:
    from sinks.sql.schema import SCHEMA_VERSION

    url = _url(args)
    with open_store(url) as store:
        found = store.schema_version()
        where = store.url.render_as_string(hide_password=True)
    out = sys.stdout
    out.write(f"store: {where}\n")
    out.write(f"schema version: {'none (no nlpmon tables)' if found is None else found}\n")
    out.write(f"this nlpmon: {SCHEMA_VERSION}\n")
    if found == SCHEMA_VERSION:
        out.write("status: up to date\n")
        return EXIT_OK
    if found is not None and found > SCHEMA_VERSION:
        raise UsageError(f"the store at {where} has schema version {found}, newer than this nlpmon's {SCHEMA_VERSION}: "
                         "upgrade nlpmon (downgrading is not supported)")
    out.write(f"status: upgrade needed: nlpmon db upgrade --store '{where}'\n")
    return EXIT_SCHEMA_BEHIND


def cmd_upgrade(args) -> int:
    import sqlalchemy as sa

    from sinks.sql.schema import SCHEMA_VERSION

    url = _url(args)
    with open_store(url, create=True, upgrade=True, must_exist=False) as store:
        before = store.schema_version()
        try:
            store.create_schema()
        except sa.exc.ProgrammingError as exc:  # PostgreSQL: permission denied for schema or table
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise UsageError(f"cannot upgrade the store: {reason} (db upgrade needs a user allowed to create "
                             "and alter tables)") from None
        where = store.url.render_as_string(hide_password=True)
    if before is None:
        sys.stdout.write(f"created schema version {SCHEMA_VERSION} at {where}\n")
    elif before == SCHEMA_VERSION:
        sys.stdout.write(f"schema version {SCHEMA_VERSION} at {where} is up to date; nothing to do\n")
    else:
        sys.stdout.write(f"upgraded {where} from schema version {before} to {SCHEMA_VERSION}\n")
    return EXIT_OK


def _days(flag: str, value: str | None, default_days: float) -> float:
    if value is None:
        return default_days
    try:
        return parse_duration_ms(value) / _DAY_MS
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def cmd_prune(args) -> int:
    from sinks.sql import RetentionPolicy
    from sinks.sql.retention import PRUNED_TABLES

    keys = _config(args).store
    policy = RetentionPolicy(
        results_days=_days("--older-than", args.older_than, keys.retention_days),
        labels_days=_days("--labels-older-than", args.labels_older_than, keys.labels_retention_days),
        reeval_days=_days("--reeval-older-than", args.reeval_older_than, keys.reeval_retention_days),
    )
    if not policy.active:
        raise UsageError("nothing to prune: give --older-than (or --labels-older-than, --reeval-older-than), or set "
                         "store.retention_days in the config")
    if args.batch_rows < 1:
        raise UsageError("--batch-rows must be >= 1")
    url = args.store or keys.url
    out = sys.stdout
    batches = [0]

    def report(batch: dict[str, int]) -> None:
        batches[0] += 1
        done = ", ".join(f"{t} {n}" for t, n in batch.items() if n)
        out.write(f"batch {batches[0]}: deleted {done}\n")
        out.flush()  # a Job's log shows progress, and a killed prune shows how far it got

    with open_store(url, create=True, upgrade=False) as store:
        total = store.retention.prune(policy, now_ms=time.time_ns() // 1_000_000, batch_rows=args.batch_rows,
                                      on_batch=report)
        out.write("deleted: " + ", ".join(f"{t} {total[t]}" for t in PRUNED_TABLES) + "\n")
        out.write(store.release_space(full=args.vacuum) + "\n")
    return EXIT_OK
