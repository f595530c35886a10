"""The ``checkpoints`` table: per consumer group and partition, the next offset and the open-window state.

A checkpoint is written in the store's one commit transaction with the results it covers, fenced against a
consumer that lost its partitions (docs/storage.md, *Exactly-once window results*).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from sinks.sql import schema as tables
from sinks.sql.engine import now_ms, upsert
from sinks.sql.rows import TableFamily

__all__ = ["CheckpointConflict", "Checkpoints", "checkpoint_rows"]

_CHECKPOINT_KEY = ("group_id", "topic", "partition")


class CheckpointConflict(Exception):
    """Another consumer moved a partition's checkpoint: this one no longer owns the partition.

    ``partitions`` maps each conflicting ``(topic, partition)`` to ``(expected, found)``.
    """

    def __init__(self, partitions: dict[tuple[str, int], tuple[object, object]]):
        self.partitions = partitions
        detail = ", ".join(f"{t}[{p}]: expected {e}, found {f}" for (t, p), (e, f) in sorted(partitions.items()))
        super().__init__(f"checkpoint moved by another consumer: {detail}")


def checkpoint_rows(group_id: str, cps: Mapping[tuple[str, int], tuple[int, bytes | None]]) -> list[dict]:
    """Rows of ``checkpoints`` from ``{(topic, partition): (next_offset, state)}``; refuses malformed ones."""
    now = now_ms()
    rows = []
    for (topic, partition), (next_offset, state) in cps.items():
        if isinstance(next_offset, bool) or not isinstance(next_offset, int) or next_offset < 0:
            raise ValueError(f"checkpoint of {topic}[{partition}]: next_offset must be an integer >= 0")
        if state is not None and not isinstance(state, bytes | bytearray | memoryview):
            raise TypeError(f"checkpoint of {topic}[{partition}]: state must be bytes or None")
        rows.append({
            "group_id": group_id, "topic": topic, "partition": int(partition), "next_offset": next_offset,
            "state": None if state is None else bytes(state), "updated_at_ms": now,
        })
    return rows


class Checkpoints(TableFamily):
    """Writes (fenced) and reads ``checkpoints``."""

    rows = staticmethod(checkpoint_rows)

    @staticmethod
    def write(conn: sa.Connection, group_id: str, rows: list[dict],
              expected: dict[tuple[str, int], int | None]) -> None:
        """Write checkpoint ``rows`` in ``conn`` once every partition of ``expected`` still has its offset.

        Raises :class:`CheckpointConflict`, having written nothing, when another consumer moved any of them.
        """
        if expected:
            _check_expected(conn, group_id, expected)
            # A first checkpoint is a plain INSERT, so that of two consumers racing to write it the second
            # fails on the primary key instead of overwriting the first.
            is_first = [(r["topic"], r["partition"]) in expected and expected[(r["topic"], r["partition"])] is None
                        for r in rows]
            first = [r for r, f in zip(rows, is_first) if f]
            rows = [r for r, f in zip(rows, is_first) if not f]
            if first:
                try:
                    conn.execute(sa.insert(tables.checkpoints), first)
                except sa_exc.IntegrityError:
                    raise CheckpointConflict({(r["topic"], r["partition"]): (None, "written meanwhile")
                                              for r in first}) from None
        upsert(conn, tables.checkpoints, rows, _CHECKPOINT_KEY)

    def load(
        self, group_id: str, topic_partitions: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[int, bytes | None]]:
        """Return ``{(topic, partition): (next_offset, state)}`` for those of the partitions that have one."""
        wanted = {(tp[0], int(tp[1])) for tp in topic_partitions}
        if not wanted:
            return {}
        t = tables.checkpoints.c
        topics = sorted({topic for topic, _ in wanted})
        with self._connect(write=False) as conn:
            rows = conn.execute(
                sa.select(t.topic, t.partition, t.next_offset, t.state)
                .where(t.group_id == group_id, t.topic.in_(topics))
            ).all()
        return {
            (r.topic, r.partition): (r.next_offset, None if r.state is None else bytes(r.state))
            for r in rows if (r.topic, r.partition) in wanted
        }


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
