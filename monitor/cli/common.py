"""What every ``nlpmon`` subcommand shares: exit codes, the usage error, the config flags and their loading.

Subcommand modules (``run``, ``reference``, ``history``, ``ab``, ``reeval``) import from here and never from each
other; ``main`` dispatches to them.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

from monitor.config import ConfigError, load_config

__all__ = ["EXIT_OK", "EXIT_INTERNAL", "EXIT_USAGE", "UsageError", "add_config_flags", "command_group", "config_from_args",
           "parse_since", "parse_duration_ms", "read_store", "open_store"]

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem the user can fix (bad flag, missing file, incompatible profile): exit 2, one line, no traceback."""


def command_group(sub, name: str, *, help: str, description: str):
    """Register ``nlpmon NAME SUBCOMMAND``: a command whose subcommands are required; return their subparsers."""
    p = sub.add_parser(name, help=help, description=description)
    group = p.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND",
                             help=f"what to do (nlpmon {name} SUBCOMMAND --help for its options)")
    group.required = True
    return group


def add_config_flags(p: argparse.ArgumentParser, *, source: bool = True, tokenizer: bool = True) -> None:
    """--config, --set, --log-format, --log-level and (``tokenizer``) --tokenizer for tokenizer.path; a command
    whose own --tokenizer means something else (``reeval``) passes ``tokenizer=False``."""
    p.add_argument("--config", "-c", metavar="FILE", help="TOML config file (see docs/config.md)")
    p.add_argument(
        "--set", metavar="SECTION.KEY=VALUE", action="append", default=[],
        help="override one config key, e.g. --set window.min_events=100 (repeatable; beats file and environment)",
    )  # fmt: skip
    if tokenizer:
        p.add_argument("--tokenizer", metavar="DIR", help="served model's tokenizer directory (tokenizer.path)")
    p.set_defaults(tokenizer_is_config=tokenizer)
    p.add_argument("--log-format", choices=("text", "json"), help="log format (logging.format)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="log level (logging.level)")


# -- helpers -------------------------------------------------------------------------------------------------
def _overrides(args, extra: dict | None = None) -> dict:
    out: dict = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise UsageError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    if getattr(args, "tokenizer_is_config", True) and args.tokenizer:
        out["tokenizer.path"] = args.tokenizer
    if args.log_format:
        out["logging.format"] = args.log_format
    if args.log_level:
        out["logging.level"] = args.log_level
    out.update({k: v for k, v in (extra or {}).items() if v is not None})
    return out


def config_from_args(args, extra: dict | None = None):
    try:
        return load_config(args.config, overrides=_overrides(args, extra))
    except ConfigError as exc:
        raise UsageError(f"config error: {exc}") from None


# -- reading the store -----------------------------------------------------------------------------------------
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
SINCE_HELP = "a duration back from now (30m, 2h, 7d, 1h30m), an RFC 3339 timestamp, or epoch seconds/ms"


def parse_since(text: str, now_ms: int) -> str | int:
    """Turn ``--since``: a duration (``30m``, ``2h``, ``7d``, ``1h30m``) is epoch ms back from ``now_ms``.

    Anything else is returned as given, for the store to read as an RFC 3339 timestamp or an epoch number.

    >>> parse_since("2h", now_ms=10_000_000)
    2800000
    >>> parse_since("2025-11-24T16:00:00Z", now_ms=0)
    '2025-11-24T16:00:00Z'
    """
    text = text.strip()
    if not _DURATION.fullmatch(text):
        return text
    return int(now_ms - parse_duration_ms(text))


def parse_duration_ms(text: str) -> int:
    """Return the milliseconds of a duration such as ``30m``, ``2h``, ``30d``, ``1w`` or ``1h30m``.

    >>> parse_duration_ms("1d12h")
    129600000
    """
    text = text.strip()
    if not _DURATION.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration (e.g. 30d, 12h, 1w, 1h30m)")
    return int(sum(float(n) * _UNIT_MS[unit] for n, unit in _DURATION_PART.findall(text)))


def read_store(url: str) -> contextlib.AbstractContextManager:
    """Open the SQL store for a read command: it never creates a database, a schema or a file.

    A missing SQLite file, a database without nlpmon's tables and an unreachable server are usage errors (exit 2).
    """
    return open_store(url)


@contextlib.contextmanager
def open_store(url: str, *, create: bool = False, upgrade: bool = False, must_exist: bool = True) -> Iterator:
    """Open the SQL store for a command; its errors are usage errors (exit 2).

    ``create``/``upgrade`` as for :class:`~sinks.sql.SqlStore`; ``must_exist`` refuses a missing SQLite file
    rather than creating an empty one (a typo in --store must not look like an empty store).
    """
    import sqlalchemy as sa

    from sinks.sql import SchemaVersionError, SqlStore, StoreUnavailable

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise UsageError(f"--store {url!r} is not a SQLAlchemy URL (e.g. sqlite:///nlpmon.db)") from None
    database = parsed.database
    if (must_exist and parsed.get_backend_name() == "sqlite" and database not in (None, "", ":memory:")
            and not Path(database).is_file()):
        raise UsageError(f"cannot reach the store: no SQLite database at {database} (check --store; this command "
                         "never creates one)")
    try:
        with SqlStore(url, create=create, upgrade=upgrade) as store:
            yield store
    except StoreUnavailable as exc:
        raise UsageError(f"cannot reach the store: {exc}") from None
    except SchemaVersionError as exc:
        raise UsageError(str(exc)) from None
