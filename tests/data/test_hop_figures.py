"""Time held, hop by hop, in the report: `holders` and each service's `queue_seconds`
against a day computed by hand (on SQLite and, with CARELOOP_TEST_DB=postgres, on
PostgreSQL: both must give these exact figures), working time where the service has working
hours, which hops count (those that ended in the period), and the CSV and table."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from bot.domain.catalogue import Catalogue
from bot.domain.catalogue_load import parse_catalogue
from bot.reports.compute import compute_report
from bot.reports.export import HOLDERS_CSV_COLUMNS, report_csv, report_json, report_table
from bot.reports.model import Report
from storage.db import create_db_engine, session_factory
from storage.models import Consult
from storage.models_hops import ConsultHop
from tests.data.test_report_figures import SECRETS, Factory
from tests.harness import TEST_CATALOGUE

D = datetime(2026, 11, 24, tzinfo=UTC)  # a Tuesday: the period is this day
H = timedelta(hours=1)
M = timedelta(minutes=1)
# Routine clocks count Mon-Fri 08:00-18:00 UTC only; urgent ones run around the clock.
HOURS_CATALOGUE = TEST_CATALOGUE.replace(
    "[urgency.routine]\n", '[urgency.routine]\nhours = "Mon-Fri 08:00-18:00"\ntimezone = "UTC"\n'
)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return parse_catalogue(HOURS_CATALOGUE, "test.toml")


@pytest.fixture
def sessions(db_url: str) -> Iterator[Any]:
    engine = create_db_engine(db_url)
    yield session_factory(engine)
    engine.dispose()


def hop(s: Session, c: Consult, role: str, user: str | None, start: datetime, end: datetime):
    s.add(
        ConsultHop(
            consult_id=c.id, service=c.service, role=role, user=user, started_at=start,
            ended_at=end,
        )
    )  # fmt: skip


def seed(s: Session) -> None:
    """The day, by hand (seconds in the comments)."""
    f = Factory(s)
    # CARD-1 urgent: queue 10m (600), UA 50m (3000), handed off, UB 5m (300), answered.
    c1 = f.add("cardiology", created=D + 9 * H, status="answered", assignee="UB")
    hop(s, c1, "queue", None, D + 9 * H, D + 9 * H + 10 * M)
    hop(s, c1, "consultant", "UA", D + 9 * H + 10 * M, D + 10 * H)
    hop(s, c1, "consultant", "UB", D + 10 * H, D + 10 * H + 5 * M)
    # CARD-2 urgent: queue 30m (1800), UA 15m (900), need info: the requester 25m (1500),
    # UA again 10m (600).
    c2 = f.add("cardiology", created=D + 11 * H, status="answered", assignee="UA")
    hop(s, c2, "queue", None, D + 11 * H, D + 11 * H + 30 * M)
    hop(s, c2, "consultant", "UA", D + 11 * H + 30 * M, D + 11 * H + 45 * M)
    hop(s, c2, "requester", "UREQ1", D + 11 * H + 45 * M, D + 12 * H + 10 * M)
    hop(s, c2, "consultant", "UA", D + 12 * H + 10 * M, D + 12 * H + 20 * M)
    # CARD-3 urgent, opened the evening before: its queue hop ends in the period (2h20m,
    # 8400), so it counts.
    c3 = f.add("cardiology", created=D - 2 * H, status="acknowledged", assignee="UA")
    hop(s, c3, "queue", None, D - 2 * H, D + 20 * M)
    # CARD-4: one hop ended before the period, one after it: neither counts.
    c4 = f.add("cardiology", created=D - 14 * H, status="acknowledged", assignee="UC")
    hop(s, c4, "queue", None, D - 14 * H, D - 13 * H)
    hop(s, c4, "consultant", "UC", D - 13 * H, D + 24 * H + 10 * M)
    # RAD-1 routine (working hours): queue Monday 17:00 to Tuesday 09:00 is 16h on the
    # clock, 2h (7200) of working time; UA 09:00 to 19:00 is 9h (32400) of working time.
    r1 = f.add("radiology", "routine", created=D - 7 * H, status="answered", assignee="UA")
    hop(s, r1, "queue", None, D - 7 * H, D + 9 * H)
    hop(s, r1, "consultant", "UA", D + 9 * H, D + 19 * H)


@pytest.fixture
def report(sessions: Any, catalogue: Catalogue) -> Report:
    with sessions() as s, s.begin():
        seed(s)
    with sessions() as s:
        return compute_report(s, catalogue=catalogue, since=D, until=D + 24 * H, now=D + 30 * H)


def held(total: float, median: float, p90: float) -> dict[str, float]:
    return {"total": total, "median": median, "p90": p90}


def test_holders_and_queue_times_of_a_day_by_hand(report: Report):
    data = report.as_dict()
    assert data["holders"] == [
        {"service": "radiology", "user": "UA", "role": "consultant", "hops": 1,
         "held_seconds": held(32400.0, 32400.0, 32400.0)},
        # UA: 3000, 900, 600 → median 900, p90 at rank 1.8: 900 + 0.8 × 2100.
        {"service": "cardiology", "user": "UA", "role": "consultant", "hops": 3,
         "held_seconds": held(4500.0, 900.0, 2580.0)},
        {"service": "cardiology", "user": "UB", "role": "consultant", "hops": 1,
         "held_seconds": held(300.0, 300.0, 300.0)},
        {"service": "cardiology", "user": "UREQ1", "role": "requester", "hops": 1,
         "held_seconds": held(1500.0, 1500.0, 1500.0)},
    ]  # fmt: skip
    queues = {e["service"]: e["queue_seconds"] for e in data["services"]}
    # Cardiology: 600, 1800, 8400 → median 1800, p90 1800 + 0.8 × 6600.
    assert queues == {
        "radiology": {"median": 7200.0, "p90": 7200.0},
        "pathology": {"median": None, "p90": None},
        "cardiology": {"median": 1800.0, "p90": 7080.0},
    }
    # The core figures are untouched: no consult was created in the period but four.
    cards = {e["service"]: e for e in data["services"]}["cardiology"]
    assert cards["consults"] == 2


def test_holders_in_the_csv_and_the_table(report: Report):
    text = report_csv(report)
    tables = text.split("\n\n")
    rows = list(csv.DictReader(io.StringIO(tables[-1])))
    assert tuple(rows[0]) == HOLDERS_CSV_COLUMNS
    assert [(r["service"], r["user"], r["role"], r["hops"], r["held_total"]) for r in rows] == [
        ("radiology", "", "queue", "1", "7200.0"),
        ("cardiology", "", "queue", "3", "10800.0"),
        ("radiology", "UA", "consultant", "1", "32400.0"),
        ("cardiology", "UA", "consultant", "3", "4500.0"),
        ("cardiology", "UB", "consultant", "1", "300.0"),
        ("cardiology", "UREQ1", "requester", "1", "1500.0"),
    ]
    table = report_table(report)
    assert "Time held, hops that ended in the period" in table
    assert "cardiology: UA (consultant): 3 hop(s), 1h 15m; median 15m, p90 43m" in table
    assert "cardiology: queue (nobody owned it): 3 hop(s), 3h 00m" in table


def test_no_patient_data_in_the_time_held(report: Report):
    for out in (report_json(report), report_csv(report), report_table(report)):
        assert not any(secret in out for secret in SECRETS)
    assert json.loads(report_json(report))["holders"]  # not vacuous


def test_a_period_without_hops_has_no_holders(sessions: Any, catalogue: Catalogue):
    with sessions() as s:
        report = compute_report(s, catalogue=catalogue, since=D, until=D + H, now=D + H)
    assert report.as_dict()["holders"] == []
    assert "Time held" not in report_table(report)
    assert report_csv(report).count("\n\n") == 0
