"""The daemon's retention thread: one bounded batch per interval, nothing without a policy, survives an outage."""

from __future__ import annotations

import time

import pytest

from monitor.config import StoreConfig
from monitor.runtime.pruner import Pruner, policy_of
from sinks.sql import SqlStore, StoreUnavailable
from sinks.sql.retention import DAY_MS
from tests import factories

NOW = 1_764_000_000_000


def old_windows(store, n):
    store.commit("g", results=[factories.window(NOW - 40 * DAY_MS + i * 300_000, NOW - 40 * DAY_MS + (i + 1) * 300_000)
                               for i in range(n)], checkpoints={("t", 0): (n, b"s")})


def test_policy_of_the_store_section():
    policy = policy_of(StoreConfig(retention_days=30, labels_retention_days=180))
    assert (policy.results_days, policy.labels_days, policy.reeval_days) == (30, 180, 0)


def test_thread_deletes_one_batch_per_interval(tmp_path):
    with SqlStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        old_windows(store, 7)
        config = StoreConfig(retention_days=30, prune_interval_seconds=1, prune_batch_rows=3)
        with Pruner(store, config, wall_ms=lambda: NOW) as pruner:
            assert pruner._thread is not None
            time.sleep(1.5)  # one interval: one batch of 3
            assert len(store.history("m")) == 4
            deadline = time.monotonic() + 10
            while store.history("m") and time.monotonic() < deadline:
                time.sleep(0.2)
        assert store.history("m") == []
        assert store.load_checkpoints("g", [("t", 0)]) == {("t", 0): (7, b"s")}


def test_no_retention_no_thread(tmp_path):
    with SqlStore(f"sqlite:///{tmp_path / 's.db'}") as store, Pruner(store, StoreConfig()) as pruner:
        assert pruner._thread is None


def test_an_unavailable_store_is_skipped_not_fatal(tmp_path, caplog):
    class Down:
        def prune_batch(self, *a, **k):
            raise StoreUnavailable("database unavailable: down")

    pruner = Pruner(Down(), StoreConfig(retention_days=1, prune_interval_seconds=1))
    with pytest.raises(StoreUnavailable):
        pruner.run_once()
    with pruner:
        time.sleep(1.3)
        assert pruner._thread.is_alive()
    assert "prune skipped" in caplog.text
