"""The SQL store of a test, on SQLite and on PostgreSQL (``store_url``), with its schema created."""

from __future__ import annotations

import pytest

from sinks.sql import SqlStore


@pytest.fixture
def store(store_url):
    s = SqlStore(store_url)
    s.create_schema()
    yield s
    s.close()
