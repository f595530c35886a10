"""window_evidence: written with its window in the same transaction, replaced with it, pruned with it, read back."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sqlalchemy as sa

from detectors.evidence import TokenShift, quantile_sketch
from monitor.results import Exemplar, WindowEvidence
from sinks.sql import RetentionPolicy, SqlStore
from sinks.sql import schema as sql_schema
from tests import factories

pytestmark = pytest.mark.integration
FIVE_MIN = 300_000


def window(i: int):
    return factories.window(1_764_000_000_000 + i * FIVE_MIN, 1_764_000_000_000 + (i + 1) * FIVE_MIN)


def _evidence(shift: float) -> WindowEvidence:
    return WindowEvidence(
        distributions={"feature:char_count": quantile_sketch(np.arange(100.0) + shift), "confidence": quantile_sketch(np.array([]))},
        tokens_rising=(TokenShift("battery", 40, 600, 3, 4000, 2.5, 7.1, 88.9),),
        token_source="tokenizer",
        exemplars=(Exemplar("nlpmon.events/0@1234", "req-1", 9.5), Exemplar("nlpmon.events/0@1200", None, 8.0)),
        exemplar_score="features",
        embedding_points=((0.5, -1.25),),
    )


def _count(store, table) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_evidence_is_written_read_back_replaced_and_pruned_with_its_window(store):
    with_evidence = dataclasses.replace(window(0), evidence=_evidence(0.0))
    without = window(1)
    store.commit("g", results=[with_evidence, without], checkpoints={})
    got = store.window_evidence(with_evidence.model)
    assert [doc["window_start"] for doc, _ in got] == [with_evidence.to_dict()["window_start"], without.to_dict()["window_start"]]
    assert got[0][1] == with_evidence.evidence and got[1][1] is None
    assert "evidence" not in got[0][0]  # the result JSON is unchanged
    # Written again (a partial window, then the final one): the evidence is replaced, or removed without any.
    store.commit("g", results=[dataclasses.replace(with_evidence, evidence=_evidence(5.0))], checkpoints={})
    assert store.window_evidence(with_evidence.model)[0][1] == _evidence(5.0)
    store.commit("g", results=[dataclasses.replace(with_evidence, evidence=None)], checkpoints={})
    assert store.window_evidence(with_evidence.model)[0][1] is None
    assert _count(store, sql_schema.window_evidence) == 0
    store.commit("g", results=[dataclasses.replace(with_evidence, evidence=_evidence(1.0))], checkpoints={})
    assert store.window_evidence(with_evidence.model, until=without.window_start_ms)[0][1] == _evidence(1.0)
    assert len(store.window_evidence(with_evidence.model, limit=1)) == 1
    deleted = store.prune_batch(RetentionPolicy(results_days=1), now_ms=without.window_end_ms + 10 * 86_400_000)
    assert deleted["window_evidence"] == 1 and deleted["window_results"] == 2
    assert _count(store, sql_schema.window_evidence) == 0


def test_version_5_database_is_upgraded_and_keeps_its_windows(store):
    """A database of the previous version (no window_evidence) is upgraded in place; its windows read back
    without evidence, new ones with."""
    old = window(0)
    store.commit("g", results=[old], checkpoints={})
    with store.engine.begin() as conn:
        sql_schema.window_evidence.drop(conn)
        conn.execute(sa.update(sql_schema.schema_version).values(version=5))
    fresh = SqlStore(store.url.render_as_string(hide_password=False))
    try:
        fresh.create_schema()
        assert fresh.schema_version() == sql_schema.SCHEMA_VERSION == 6
        assert fresh.window_evidence(old.model) == [(old.to_dict(), None)]
        new = dataclasses.replace(window(1), evidence=_evidence(0.0))
        fresh.commit("g", results=[new], checkpoints={})
        assert fresh.window_evidence(old.model)[1] == (new.to_dict(), new.evidence)
    finally:
        fresh.close()
