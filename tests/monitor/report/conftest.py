"""A SQLite store holding a drifted stream (tests/fixtures/report_data.py), shared by the report tests."""

from __future__ import annotations

import pytest

from sinks.sql import SqlStore
from tests.fixtures.report_data import fill_store


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    """(store, info): 48 five-minute windows, drifted from the 37th on, with segments, profile, labels."""
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'nlpmon.db'}"
    store = SqlStore(url)
    store.create_schema()
    info = fill_store(store, windows=48, drift_from=36)
    info["url"] = url
    yield store, info
    store.close()
