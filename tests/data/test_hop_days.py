"""Stored hop days on PostgreSQL (`bot.reports.hop_days`, migration 0010): after a fill,
the time held read from the stored days plus the live rest is bit for bit the live
computation's (a year, a quarter, 30 days of the bench's consults and hops, working hours
in two zones); the triggers forget a day when one of its hops is deleted or a consult
whose hops ended that day changes urgency; rows stored under other working hours are not
used, and the next fill replaces them; days that ended less than a day ago are not stored;
SQLite stores nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from bot.domain.catalogue import Catalogue
from bot.domain.catalogue_load import parse_catalogue
from bot.reports import holders_pg, hop_days
from storage.db import session_factory
from storage.models_report_days import ReportHopDay
from tests.report_bench_loader import report_bench

KEYS = ["radiology", "pathology", "cardiology", "neurology"]
ROWS = 3000


@pytest.fixture
def loaded(engine: Engine, postgres_only: None) -> tuple[sessionmaker[Session], datetime, Any]:
    bench = report_bench()
    until = datetime.now(UTC).replace(microsecond=0)
    bench.load_postgres(engine, ROWS, until)
    return session_factory(engine), until, parse_catalogue(bench.CATALOGUE, "bench.toml")


def live(
    sessions: sessionmaker[Session], catalogue: Catalogue, since: datetime, until: datetime
) -> str:
    with sessions() as s:
        hours = lambda svc, u: holders_pg.hours_for(catalogue, svc, u)  # noqa: E731
        return exact(holders_pg.pooled_seconds(s, KEYS, since, until, hours))


def cached(
    sessions: sessionmaker[Session], catalogue: Catalogue, since: datetime, until: datetime
) -> str | None:
    with sessions() as s:
        pooled = hop_days.cached_pooled(s, catalogue, KEYS, since, until)
        return None if pooled is None else exact(pooled)


def exact(pooled: dict[Any, list[Any]]) -> str:
    """Per group: the count, the sorted seconds (the figures depend on nothing else)."""
    import numpy as np

    return repr(sorted((k, sorted(np.concatenate(v).tolist())) for k, v in pooled.items()))


def stored_days(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return s.execute(select(func.count()).where(ReportHopDay.role == "")).scalar_one()


def test_stored_days_give_the_live_figures_bit_for_bit(loaded: Any) -> None:
    sessions, until, catalogue = loaded
    assert cached(sessions, catalogue, until - timedelta(days=365), until) is None  # none yet
    pairs = hop_days.fill(sessions, catalogue, KEYS)
    assert pairs > 4 * 360 and hop_days.fill(sessions, catalogue, KEYS) == 0
    with sessions() as s:  # nothing stored for a day that ended less than a day ago
        latest = s.execute(select(func.max(ReportHopDay.day))).scalar_one()
        now = s.execute(select(func.now())).scalar_one().astimezone(UTC)
    assert latest < (now - timedelta(days=1)).date()
    for days in (365, 90, 30):
        since = until - timedelta(days=days, hours=5)
        got = cached(sessions, catalogue, since, until)
        assert got is not None and got == live(sessions, catalogue, since, until)


def test_triggers_forget_a_day_whose_hops_change(loaded: Any) -> None:
    sessions, until, catalogue = loaded
    hop_days.fill(sessions, catalogue, KEYS)
    before = stored_days(sessions)
    with sessions() as s, s.begin():
        hop_id, consult_id = s.execute(
            text(
                "SELECT id, consult_id FROM consult_hops WHERE ended_at < now() - interval '30 days' LIMIT 1"
            )
        ).one()
        s.execute(text("DELETE FROM consult_hops WHERE id = :i"), {"i": hop_id})
    assert stored_days(sessions) == before - 1
    with sessions() as s, s.begin():  # a consult with hops ending on other days
        s.execute(
            text(
                "UPDATE consults SET urgency = CASE urgency WHEN 'routine' THEN 'urgent' ELSE 'routine' END"
                " WHERE id = (SELECT consult_id FROM consult_hops WHERE service = 'radiology'"
                " AND ended_at < now() - interval '30 days' ORDER BY id LIMIT 1)"
            )
        )
    assert stored_days(sessions) < before - 1
    since = until - timedelta(days=365)
    assert cached(sessions, catalogue, since, until) == live(sessions, catalogue, since, until)
    hop_days.fill(sessions, catalogue, KEYS)
    assert stored_days(sessions) == before
    assert cached(sessions, catalogue, since, until) == live(sessions, catalogue, since, until)


def test_rows_of_other_working_hours_are_not_used_and_the_fill_replaces_them(loaded: Any) -> None:
    sessions, until, catalogue = loaded
    hop_days.fill(sessions, catalogue, KEYS)
    changed = parse_catalogue(
        report_bench().CATALOGUE.replace('"Mon-Fri 08:00-18:00"', '"Mon-Sat 07:00-19:00"'), "b.toml"
    )
    since = until - timedelta(days=365)
    assert live(sessions, changed, since, until) != live(sessions, catalogue, since, until)
    got = cached(sessions, changed, since, until)  # radiology's days are not used: live
    assert got == live(sessions, changed, since, until)
    assert hop_days.fill(sessions, changed, KEYS) > 360  # radiology's days again
    assert cached(sessions, changed, since, until) == live(sessions, changed, since, until)


def test_sqlite_stores_nothing(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    catalogue = parse_catalogue(report_bench().CATALOGUE, "bench.toml")
    assert hop_days.fill(session_factory(engine), catalogue, KEYS) == 0
