"""Fixtures shared by the data tests: an engine on the test's fresh database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from storage.db import create_db_engine


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on this test's database, disposed after it."""
    engine = create_db_engine(db_url)
    yield engine
    engine.dispose()
