"""What the table families of the SQL store share: argument checks, numbers, window columns, window reads.

Every column but ``result`` is read from a typed result's fields, never re-parsed from its JSON; ``result``
holds ``to_dict()``, the one place a result becomes JSON on its way into the database.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime

import sqlalchemy as sa

from detectors.base import finite_or_none
from monitor.results import ExperimentResult, ShadowResult, WindowResult

__all__ = ["Connect", "TableFamily", "check_name", "float_or_none", "number_or_none", "window_columns", "to_ms",
           "window_docs"]

# How a family opens a transaction of the store: ``connect(write=...)`` checks the schema first and turns an
# unreachable database into StoreUnavailable (SqlStore.connect).
Connect = Callable[..., AbstractContextManager[sa.Connection]]


class TableFamily:
    """A family of the store's tables: builds, writes and reads its own rows.

    Writes that must join the store's one commit take the caller's connection; reads and writes of their
    own open a transaction through ``connect`` (the store's, which checks the schema first).
    """

    def __init__(self, connect: Connect):
        self._connect = connect


# Epoch numbers below this are seconds, at or above it milliseconds (the rule of docs/events.md).
_SECONDS_LIMIT = 100_000_000_000


def check_name(what: str, value: object) -> None:
    """Refuse anything but a non-empty string as a key column's value."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")


def float_or_none(value: object) -> float | None:
    """Return a number as a float, anything else (a missing or malformed field) as ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def number_or_none(value: float | None) -> float | None:
    """Return ``value`` for a nullable float column: NaN and infinities, which JSON cannot hold, become NULL."""
    return None if value is None else finite_or_none(value)


def window_columns(result: WindowResult | ExperimentResult | ShadowResult, what: str) -> dict:
    """Return the window columns of a result: kind, start, sequence number, end, partial."""
    # None where a window has no bound yet: refused here, before anything is written.
    for name in ("window_start_ms", "window_end_ms"):
        if getattr(result, name) is None:
            raise ValueError(f"{what} has no {name.removesuffix('_ms')!r}")
    return {
        "window_kind": result.window_kind,
        "window_start_ms": result.window_start_ms,
        "window_seq": result.seq if isinstance(result, WindowResult) else result.window_seq,
        "window_end_ms": result.window_end_ms,
        "partial": result.partial,
    }


def to_ms(value: datetime | str | int | float, what: str) -> int:
    """Return epoch milliseconds of an aware datetime, an RFC 3339 string, or epoch seconds or milliseconds."""
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


def window_docs(
    connect: Connect, table: sa.Table, where, *, since, limit: int | None, tiebreak: tuple = ()
) -> list[dict]:
    """Result documents of ``table`` matching ``where``, oldest window first (``limit``: the newest ones).

    ``since`` keeps windows starting at or after it (anything :func:`to_ms` reads); ``tiebreak`` orders
    windows of one start between the start and the window kind.
    """
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    with connect(write=False) as conn:
        t = table.c
        query = sa.select(t.result).where(where)
        if since is not None:
            query = query.where(t.window_start_ms >= to_ms(since, "since"))
        order = (t.window_start_ms, *tiebreak, t.window_kind, t.window_seq)
        if limit is None:
            query = query.order_by(*order)
        else:
            # The newest `limit` windows, read newest first and turned around below.
            query = query.order_by(*(c.desc() for c in order)).limit(limit)
        found = list(conn.execute(query).scalars())
    return found if limit is None else found[::-1]
