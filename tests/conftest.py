"""Fixtures: one database per run (SQLite by default, PostgreSQL with
CARELOOP_TEST_DB=postgres), a fresh copy per test, the fake Slack, and the running bot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_slack import FakeSlack
from tests.harness import Bot, Database, start_bot, use_postgres

# The reliability suite's figures line (see tests/reliability/figures.py).
pytest_plugins = ("tests.reliability.figures",)


def pytest_report_header(config: pytest.Config) -> str:
    return f"careloop database: {'postgresql' if use_postgres() else 'sqlite'}"


@pytest.fixture(scope="session")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    db = Database(tmp_path_factory.mktemp("db"))
    yield db
    db.drop()


@pytest.fixture
def db_url(database: Database) -> str:
    return database.fresh_url()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def bot(db_url: str, slack: FakeSlack) -> Iterator[Bot]:
    running = start_bot(db_url, slack)
    yield running
    running.stop()


@pytest.fixture
def postgres_only() -> None:
    if not use_postgres():
        pytest.skip("needs PostgreSQL (CARELOOP_TEST_DB=postgres)")
