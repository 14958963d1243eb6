"""Reports: figures against hand-computed values on seeded consults (on SQLite and, with
CARELOOP_TEST_DB=postgres, on PostgreSQL), percentiles, the CLI, Slack rendering, the
digest and its chart, and that no patient reference ever leaks into any of them."""

from __future__ import annotations

import ast
import csv
import inspect
import io
import json
import random
import re
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session

from bot.__main__ import main
from bot.app import build_services
from bot.domain.catalogue import Catalogue
from bot.domain.catalogue_load import parse_catalogue
from bot.domain.clock import FakeClock
from bot.reports import pg_reference, postgres, queries, sqlite
from bot.reports.chart import digest_chart_png
from bot.reports.cli import parse_period
from bot.reports.compute import compute_report
from bot.reports.digest import digest_week, send_weekly_digests
from bot.reports.glance import week_at_a_glance
from bot.reports.model import COUNT_FIELDS, Counts, Figures, Group
from bot.reports.percentiles import epoch_seconds, percentile
from bot.reports.stats import stats_for_slack
from bot.services import Services
from bot.settings import Settings
from bot.slack.render import digest as render_digest_module
from bot.slack.render import figures as render_figures
from bot.slack.render.context import RenderContext
from bot.slack.render.digest import render_digest
from bot.slack.render.figures import format_elapsed, format_share, stats_reply
from storage.db import create_db_engine, session_factory
from storage.models import AuditEvent, Consult, OutboxMessage
from tests.harness import RAD_LEAD, TEST_CATALOGUE, use_postgres

SECRET_PATIENT = "MRN-SECRET-999"
SECRET_QUESTION = "SECRET-QUESTION-about-the-liver"
SECRET_ANSWER = "SECRET-ANSWER-biopsy"
SECRETS = (SECRET_PATIENT, SECRET_QUESTION, SECRET_ANSWER)
PHI_COLUMN = re.compile(r"\b(patient|patient_key|question|answer|intake|feedback_comment)\b")

T0 = datetime(2026, 10, 24, tzinfo=UTC)  # period start
UNTIL = T0 + timedelta(days=7)
NOW = T0 + timedelta(days=10)
H = timedelta(hours=1)
M = timedelta(minutes=1)

PREFIX = {"radiology": "RAD", "pathology": "PATH", "cardiology": "CARD"}
CHANNEL = {"radiology": "CRAD", "pathology": "CPATH", "cardiology": "CCARD"}
# acknowledge within, answer within (TEST_CATALOGUE)
CLOCKS = {"stat": (15 * M, H), "urgent": (H, 4 * H), "routine": (4 * H, 24 * H)}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return parse_catalogue(TEST_CATALOGUE, "test.toml")


@pytest.fixture
def sessions(db_url: str) -> Iterator[Any]:
    engine = create_db_engine(db_url)
    yield session_factory(engine)
    engine.dispose()


class Factory:
    """Inserts consults with sensible defaults; every timing is relative to `created`."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.seq: dict[str, int] = {}

    def add(
        self,
        service: str = "radiology",
        urgency: str = "urgent",
        *,
        created: datetime,
        status: str = "open",
        assignee: str | None = None,
        ack: timedelta | None = None,
        first_reply: timedelta | None = None,
        answered: timedelta | None = None,
        waiting: int = 0,
        escalations: int = 0,
        handoffs: int = 0,
        reopened: int = 0,
        helpful: bool | None = None,
    ) -> Consult:
        seq = self.seq[service] = self.seq.get(service, 0) + 1
        ack_within, answer_within = CLOCKS[urgency]
        consult = Consult(
            ref=f"{PREFIX[service]}-{seq}",
            service=service,
            seq=seq,
            urgency=urgency,
            patient=SECRET_PATIENT,
            patient_key=SECRET_PATIENT.lower(),
            question=SECRET_QUESTION,
            answer=SECRET_ANSWER if answered is not None else None,
            intake={},
            requester="UREQ1",
            assignee=assignee,
            on_call="URADON",
            status=status,
            channel=CHANNEL[service],
            channel_ts=f"1700000000.{seq:06d}",
            permalink=f"https://example.slack.com/archives/{CHANNEL[service]}/p{seq}",
            created_at=created,
            acknowledged_at=created + ack if ack is not None else None,
            first_reply_at=created + first_reply if first_reply is not None else None,
            answered_at=created + answered if answered is not None else None,
            closed_at=created + answered + H if status == "closed" and answered else None,
            cancelled_at=created + H if status == "cancelled" else None,
            acknowledge_due_at=created + ack_within,
            # The answer clock is pushed back by need-info waiting, as the domain does.
            answer_due_at=created + answer_within + timedelta(seconds=waiting),
            waiting_seconds=waiting,
            nudge_level=0,
            nudges_at_level=0,
            nudge_count=0,
            escalation_count=escalations,
            reopened_count=reopened,
            handoff_count=handoffs,
            feedback_helpful=helpful,
            version=1,
        )
        self.session.add(consult)
        self.session.flush()
        return consult


def seed(session: Session) -> None:
    """The hand-computed scenario (see the expected values in the tests)."""
    f = Factory(session)
    # RAD-1 urgent: ack 10m, first reply 20m, answered 2h (due 4h), closed, helpful, reopened.
    f.add(created=T0 + H, status="closed", assignee="UA", ack=10 * M, first_reply=20 * M,
          answered=2 * H, helpful=True, reopened=1)  # fmt: skip
    # RAD-2 urgent: ack 30m, first 40m, answered 5h after 1h need-info (due 4h+1h: on time).
    f.add(created=T0 + 2 * H, status="answered", assignee="UA", ack=30 * M, first_reply=40 * M,
          answered=5 * H, waiting=3600, escalations=1, helpful=False)  # fmt: skip
    # RAD-3 stat: ack 20m (due 15m: late), first 20m, answered 70m (due 1h: late), handed off.
    f.add("radiology", "stat", created=T0 + 3 * H, status="closed", assignee="UB", ack=20 * M,
          first_reply=20 * M, answered=70 * M, handoffs=1, helpful=True)  # fmt: skip
    # RAD-4 routine: acknowledged after 1h, 10 min need-info, never answered: overdue now.
    f.add("radiology", "routine", created=T0 + timedelta(days=1), status="acknowledged",
          assignee="UB", ack=H, waiting=600)  # fmt: skip
    # RAD-5 routine: never acknowledged: overdue now.
    f.add("radiology", "routine", created=T0 + timedelta(days=2), status="open")
    # RAD-6 urgent: cancelled before anyone acknowledged.
    f.add(created=T0 + timedelta(days=3), status="cancelled")
    # RAD-7 urgent, before the period, waiting on the requester, overdue now.
    f.add(created=T0 - timedelta(days=1), status="waiting", assignee="UA", ack=5 * M,
          first_reply=5 * M)  # fmt: skip
    # RAD-8 urgent, after the period, opened 10 minutes before now: open, not overdue.
    f.add(created=NOW - 10 * M, status="open")
    # PATH-1: another service, answered in 30 minutes.
    f.add("pathology", created=T0 + H, status="closed", assignee="UP", ack=5 * M,
          first_reply=5 * M, answered=30 * M)  # fmt: skip


@pytest.fixture
def seeded(sessions: Any) -> Any:
    with sessions() as s, s.begin():
        seed(s)
    return sessions


def report_for(sessions: Any, catalogue: Catalogue, **kw: Any) -> dict[str, Any]:
    kw.setdefault("since", T0)
    kw.setdefault("until", UNTIL)
    kw.setdefault("now", NOW)
    with sessions() as s:
        return compute_report(s, catalogue=catalogue, **kw).as_dict()


def by_service(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["service"]: e for e in report["services"]}


def approx_times(median: float | None, p90: float | None) -> dict[str, Any]:
    return {"median": pytest.approx(median), "p90": pytest.approx(p90)}


FIGURE_KEYS = {
    "consults", "acknowledged", "answered", "closed", "cancelled", "open_now", "open_overdue",
    "escalated", "handed_off", "reopened", "time_to_acknowledge", "time_to_first_response",
    "time_to_answer", "waiting_on_requester", "within_sla", "ack_within_sla", "feedback",
}  # fmt: skip


# ------------------------------------------------------------------------ percentiles
@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([1, 2, 3, 4], 0.9, 3.7),
        ([1, 2, 3, 4], 0.5, 2.5),
        ([4, 1, 3, 2], 0.5, 2.5),  # order does not matter
        ([1, 2, 3, 4], 0.0, 1.0),
        ([1, 2, 3, 4], 1.0, 4.0),
        ([1, 2], 0.25, 1.25),
        ([7], 0.5, 7.0),
        ([7], 0.9, 7.0),
        ([5, 5, 5, 10], 0.5, 5.0),  # ties
        ([1200, 1200, 2400], 0.9, 2160.0),
        ([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 0.9, 91.0),
    ],
)
def test_percentile_interpolates_like_percentile_cont(values, p, expected):
    assert percentile(values, p) == pytest.approx(expected)


def test_percentile_of_nothing_is_none_and_p_is_checked():
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)
    with pytest.raises(ValueError):
        percentile([1.0], -0.1)


def test_percentile_matches_postgresql_bit_for_bit(sessions, postgres_only):
    rng = random.Random(11)
    with sessions() as s:
        for n in (1, 2, 3, 7, 10, 101, 1000):
            values = [rng.uniform(-1e6, 1e6) for _ in range(n)]
            for p in (0.0, 0.1, 0.25, 0.5, 0.9, 0.99, 1.0):
                db = s.execute(
                    text(
                        "SELECT percentile_cont(CAST(:p AS float8)) WITHIN GROUP (ORDER BY x) "
                        "FROM unnest(CAST(:v AS float8[])) AS x"
                    ),
                    {"p": p, "v": values},
                ).scalar_one()
                assert percentile(values, p) == db, (n, p)


def test_parse_period():
    assert parse_period("7d") == timedelta(days=7)
    assert parse_period(" 30d ") == timedelta(days=30)
    assert parse_period("90d") == timedelta(days=90)
    assert parse_period("12h") == timedelta(hours=12)
    assert parse_period("P2W") == timedelta(weeks=2)
    for bad in ("", "abc", "-7d", "0d", "30x", "1000000w"):
        with pytest.raises(ValueError):
            parse_period(bad)


# ------------------------------------------------------------------------ figures
def test_service_figures_by_hand(seeded, catalogue):
    report = report_for(seeded, catalogue)
    assert report["since"] == "2026-10-24T00:00:00Z"
    assert report["until"] == "2026-10-31T00:00:00Z"
    assert [e["service"] for e in report["services"]] == ["radiology", "pathology", "cardiology"]
    rad = by_service(report)["radiology"]
    assert set(rad) == FIGURE_KEYS | {"service", "by_urgency", "by_consultant", "queue_seconds"}
    assert {k: rad[k] for k in ("consults", "acknowledged", "answered", "closed", "cancelled")} == {
        "consults": 6, "acknowledged": 4, "answered": 3, "closed": 2, "cancelled": 1,
    }  # fmt: skip
    # Open now, whatever the creation date: RAD-4, RAD-5, RAD-7 (overdue) and RAD-8 (not).
    assert (rad["open_now"], rad["open_overdue"]) == (4, 3)
    assert (rad["escalated"], rad["handed_off"], rad["reopened"]) == (1, 1, 1)
    # Acknowledge: 600, 1200, 1800, 3600.
    assert rad["time_to_acknowledge"] == approx_times(1500.0, 1800 + 0.7 * 1800)
    # First response: 1200, 1200 (a tie), 2400.
    assert rad["time_to_first_response"] == approx_times(1200.0, 2160.0)
    # Answer, need-info excluded: 7200, 5h - 1h = 14400, 4200.
    assert rad["time_to_answer"] == approx_times(7200.0, 12960.0)
    assert rad["waiting_on_requester"] == {
        "total": 4200, "median": pytest.approx(2100.0), "p90": pytest.approx(3300.0),
        "consults": 2,
    }  # fmt: skip
    # Answer SLA: RAD-1, RAD-2 (exactly on time) within; RAD-3 late; RAD-4 and RAD-5 overdue;
    # RAD-6 cancelled does not count.
    assert rad["within_sla"] == pytest.approx(2 / 5)
    # Acknowledge SLA: RAD-1, RAD-2, RAD-4 within; RAD-3 late; RAD-5 overdue.
    assert rad["ack_within_sla"] == pytest.approx(3 / 5)
    assert rad["feedback"] == {"count": 3, "helpful": 2, "helpful_share": pytest.approx(2 / 3)}

    path = by_service(report)["pathology"]
    assert path["consults"] == 1
    assert path["time_to_answer"] == {"median": 1800.0, "p90": 1800.0}  # a single row
    assert path["within_sla"] == 1.0


def test_by_urgency(seeded, catalogue):
    rad = by_service(report_for(seeded, catalogue))["radiology"]
    assert list(rad["by_urgency"]) == ["stat", "urgent", "routine"]
    stat, urgent, routine = (rad["by_urgency"][u] for u in ("stat", "urgent", "routine"))
    assert set(stat) == FIGURE_KEYS
    assert stat["consults"] == 1
    assert stat["time_to_acknowledge"] == {"median": 1200.0, "p90": 1200.0}
    assert stat["time_to_answer"] == {"median": 4200.0, "p90": 4200.0}
    assert (stat["within_sla"], stat["ack_within_sla"]) == (0.0, 0.0)
    assert (stat["open_now"], stat["open_overdue"], stat["handed_off"]) == (0, 0, 1)

    assert (urgent["consults"], urgent["acknowledged"], urgent["answered"]) == (3, 2, 2)
    assert urgent["cancelled"] == 1
    assert (urgent["open_now"], urgent["open_overdue"]) == (2, 1)  # RAD-7 overdue, RAD-8 not
    assert urgent["time_to_acknowledge"] == approx_times(1200.0, 1680.0)
    assert urgent["time_to_answer"] == approx_times(10800.0, 13680.0)
    assert urgent["within_sla"] == 1.0
    assert urgent["waiting_on_requester"]["total"] == 3600

    assert (routine["consults"], routine["acknowledged"], routine["answered"]) == (2, 1, 0)
    assert (routine["open_now"], routine["open_overdue"]) == (2, 2)
    assert routine["time_to_answer"] == {"median": None, "p90": None}
    assert routine["within_sla"] == 0.0
    assert routine["feedback"] == {"count": 0, "helpful": 0, "helpful_share": None}


def test_by_consultant(seeded, catalogue):
    rad = by_service(report_for(seeded, catalogue))["radiology"]
    # Unassigned consults (RAD-5, RAD-6, RAD-8) belong to nobody.
    assert set(rad["by_consultant"]) == {"UA", "UB"}
    ua, ub = rad["by_consultant"]["UA"], rad["by_consultant"]["UB"]
    assert set(ua) == FIGURE_KEYS
    assert (ua["consults"], ua["answered"], ua["open_now"], ua["open_overdue"]) == (2, 2, 1, 1)
    assert ua["time_to_answer"] == approx_times(10800.0, 13680.0)
    assert ua["feedback"]["helpful_share"] == 0.5
    assert (ub["consults"], ub["answered"], ub["open_now"], ub["open_overdue"]) == (2, 1, 1, 1)
    assert ub["time_to_acknowledge"] == approx_times(2400.0, 1200 + 0.9 * 2400)
    assert ub["waiting_on_requester"]["total"] == 600
    assert by_service(report_for(seeded, catalogue))["pathology"]["by_consultant"].keys() == {"UP"}


def test_empty_period_and_empty_service(seeded, catalogue):
    report = report_for(seeded, catalogue, since=T0 - timedelta(days=60), until=T0 - H * 48)
    rad = by_service(report)["radiology"]
    assert rad["consults"] == 0
    assert rad["time_to_acknowledge"] == {"median": None, "p90": None}
    assert rad["time_to_answer"] == {"median": None, "p90": None}
    assert rad["waiting_on_requester"] == {"total": 0, "median": None, "p90": None, "consults": 0}
    assert (rad["within_sla"], rad["ack_within_sla"]) == (None, None)
    assert rad["open_now"] == 4  # open consults are counted whatever the period
    assert set(rad["by_consultant"]) == {"UA", "UB"}  # they hold open consults
    assert rad["by_consultant"]["UA"]["consults"] == 0
    card = by_service(report)["cardiology"]
    assert card["consults"] == card["open_now"] == 0
    assert card["by_consultant"] == {}
    assert all(u["consults"] == 0 for u in card["by_urgency"].values())


def test_services_filter_and_unknown_service(seeded, catalogue):
    report = report_for(seeded, catalogue, services=["rad"])  # aliases work too
    assert [e["service"] for e in report["services"]] == ["radiology"]
    with pytest.raises(ValueError, match="radiology"):
        report_for(seeded, catalogue, services=["nope"])


def test_period_is_half_open(sessions, catalogue):
    with sessions() as s, s.begin():
        f = Factory(s)
        f.add(created=T0, status="open")
        f.add(created=UNTIL, status="open")
        f.add(created=UNTIL - timedelta(microseconds=1), status="open")
    rad = by_service(report_for(sessions, catalogue))["radiology"]
    assert rad["consults"] == 2


def test_fractional_times_identical_on_both_paths(sessions, catalogue):
    """Random times with microseconds: the SQL and Python aggregations agree exactly."""
    rng = random.Random(5)
    with sessions() as s, s.begin():
        f = Factory(s)
        for _ in range(300):
            urgency = rng.choice(["stat", "urgent", "routine"])
            answered = rng.random() < 0.8
            created = T0 + timedelta(seconds=rng.uniform(0, 6 * 86400))
            f.add(
                rng.choice(["radiology", "pathology"]),
                urgency,
                created=created,
                status="closed" if answered else rng.choice(["open", "acknowledged", "cancelled"]),
                assignee=rng.choice(["U1", "U2", "U3", None]),
                ack=timedelta(seconds=rng.uniform(0, 40000)),
                first_reply=timedelta(seconds=rng.uniform(0, 90000)),
                answered=timedelta(seconds=rng.uniform(1, 200000)) if answered else None,
                waiting=rng.choice([0, 0, 0, rng.randrange(1, 50000)]),
                helpful=rng.choice([None, True, False]),
            )
    args = (["radiology", "pathology"], T0, UNTIL, NOW)
    with sessions() as s:
        in_python = queries.period_groups_python(s, *args)
        if use_postgres():
            assert postgres.period_groups_sql(s, *args) == in_python
            assert pg_reference.period_groups_reference(s, *args) == in_python
        else:
            assert sqlite.period_groups_sqlite(s, *args) == in_python
        # A plain reference computed from ORM objects, for one group.
        rows = (
            s.execute(
                select(Consult).where(
                    Consult.service == "radiology",
                    Consult.urgency == "stat",
                    Consult.created_at >= T0,
                    Consult.created_at < UNTIL,
                )
            )
            .scalars()
            .all()
        )
    group = in_python[("radiology", "u", "stat")]
    assert group.consults == len(rows) > 10
    answer = [epoch_seconds(c.answered_at, c.created_at, c.waiting_seconds) for c in rows
              if c.answered_at]  # fmt: skip
    ack = [epoch_seconds(c.acknowledged_at, c.created_at) for c in rows]
    assert group.ttans == (percentile(answer, 0.5), percentile(answer, 0.9))
    assert group.tta == (percentile(ack, 0.5), percentile(ack, 0.9))
    assert group.sla_ok == sum(
        1 for c in rows if c.answered_at and c.answered_at <= c.answer_due_at
    )


def test_seconds_match_postgresql_date_part(sessions, postgres_only):
    rng = random.Random(3)
    with sessions() as s:
        for _ in range(200):
            a = T0 + timedelta(microseconds=rng.randrange(-(10**14), 10**14))
            b = T0 + timedelta(microseconds=rng.randrange(-(10**14), 10**14))
            w = rng.randrange(0, 10**6)
            db = s.execute(
                text("SELECT date_part('epoch', CAST(:a AS timestamptz) - :b) - :w"),
                {"a": a, "b": b, "w": w},
            ).scalar_one()
            assert epoch_seconds(a, b, w) == db


def test_report_reads_no_patient_columns(seeded, catalogue, db_url, monkeypatch):
    """The report's SQL never selects patient, question, answer or intake."""
    seen: list[str] = []
    engine = create_db_engine(db_url)
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    fetch_binary = postgres.fetch_binary

    def spy(runner, stmt):  # the binary fetch bypasses SQLAlchemy's cursor events
        seen.append(str(stmt))
        return fetch_binary(runner, stmt)

    monkeypatch.setattr(postgres, "fetch_binary", spy)
    with session_factory(engine)() as s:
        compute_report(s, catalogue=catalogue, since=T0, until=UNTIL, now=NOW)
        queries.overdue_refs(s, ["radiology"], NOW)
        digest_chart_png(s, service="radiology", until=UNTIL)
    engine.dispose()
    assert len(seen) >= 4
    for statement in seen:
        assert not PHI_COLUMN.search(statement), statement


# ------------------------------------------------------------------------ CLI
@pytest.fixture
def cli_env(monkeypatch, tmp_path, sessions, db_url):
    config = tmp_path / "consult.toml"
    config.write_text(TEST_CATALOGUE)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CONSULT_CONFIG", str(config))
    monkeypatch.setenv("LOG_FORMAT", "text")
    monkeypatch.chdir(tmp_path)  # no stray .env
    now = datetime.now(UTC)
    with sessions() as s, s.begin():
        f = Factory(s)
        f.add(created=now - timedelta(days=2), status="closed", assignee="UA", ack=10 * M,
              first_reply=20 * M, answered=2 * H, helpful=True)  # fmt: skip
        f.add("radiology", "stat", created=now - timedelta(days=3), status="answered",
              assignee="UB", ack=5 * M, first_reply=5 * M, answered=30 * M)  # fmt: skip
        # Unacknowledged (overdue), its answer due an hour after `now`: not on a run's edge.
        f.add("radiology", "routine", created=now - timedelta(hours=23), status="open")
        f.add(created=now - timedelta(days=45), status="closed", assignee="UA", ack=M,
              first_reply=M, answered=H)  # fmt: skip
    return now


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["report", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json(cli_env, capsys):
    code, out, _ = run_cli(capsys, "--format", "json", "--since", "30d")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {
        "since", "until", "services", "critical", "followups", "holders", "transfers"
    }  # fmt: skip
    assert data["since"].endswith("Z") and data["until"].endswith("Z")
    until = datetime.fromisoformat(data["until"].replace("Z", "+00:00"))
    since = datetime.fromisoformat(data["since"].replace("Z", "+00:00"))
    assert until - since == timedelta(days=30)
    rad = {e["service"]: e for e in data["services"]}["radiology"]
    for key in ("service", "consults", "acknowledged", "answered", "open_overdue", "escalated",
                "time_to_acknowledge", "time_to_first_response", "time_to_answer",
                "within_sla", "by_urgency", "by_consultant"):  # fmt: skip
        assert key in rad
    assert set(rad["time_to_acknowledge"]) == {"median", "p90"}
    assert set(rad["time_to_first_response"]) == {"median", "p90"}
    assert set(rad["time_to_answer"]) == {"median", "p90"}
    assert rad["consults"] == 3  # the 45-day-old one is outside 30d
    assert rad["time_to_answer"] == approx_times(4500.0, 6660.0)
    assert set(rad["by_urgency"]) == {"stat", "urgent", "routine"}
    assert set(rad["by_consultant"]) == {"UA", "UB"}
    assert set(rad["by_urgency"]["stat"]) == FIGURE_KEYS
    assert not any(s in out for s in SECRETS)


def test_cli_fills_the_days_then_reports_the_same(cli_env, capsys):
    """`python -m bot report --fill-days`: stores the settled days (on PostgreSQL; none on
    SQLite), then prints the same report as without them."""
    code, plain, _ = run_cli(capsys, "--format", "json", "--since", "30d")
    code_filled, filled, err = run_cli(capsys, "--format", "json", "--since", "30d", "--fill-days")
    assert code == code_filled == 0
    written = int(err.split("report days: ")[1].split()[0])
    assert (written > 0) == use_postgres()
    drop = ("since", "until")  # a second later
    assert {k: v for k, v in json.loads(filled).items() if k not in drop} == {
        k: v for k, v in json.loads(plain).items() if k not in drop
    }


def test_cli_service_filter_and_default_period(cli_env, capsys):
    code, out, _ = run_cli(capsys, "--format", "json", "--service", "radiology", "--since", "90d")
    assert code == 0
    data = json.loads(out)
    assert [e["service"] for e in data["services"]] == ["radiology"]
    assert data["services"][0]["consults"] == 4


def test_cli_csv(cli_env, capsys):
    code, out, _ = run_cli(capsys, "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 3 * 4  # per service, and per service and urgency
    header = out.splitlines()[0].split(",")
    for column in ("service", "urgency", "consults", "acknowledged", "answered", "open_overdue",
                   "escalated", "tta_median", "tta_p90", "ttfr_median", "ttfr_p90",
                   "ttans_median", "ttans_p90", "within_sla"):  # fmt: skip
        assert column in header
    rad = next(r for r in rows if r["service"] == "radiology" and r["urgency"] == "all")
    assert (rad["consults"], rad["answered"], rad["open_overdue"]) == ("3", "2", "1")
    assert float(rad["ttans_median"]) == 4500.0
    stat = next(r for r in rows if r["service"] == "radiology" and r["urgency"] == "stat")
    assert float(stat["tta_median"]) == 300.0
    card = next(r for r in rows if r["service"] == "cardiology" and r["urgency"] == "all")
    assert card["consults"] == "0" and card["tta_median"] == "" and card["within_sla"] == ""
    assert not any(s in out for s in SECRETS)


def test_cli_table(cli_env, capsys):
    code, out, _ = run_cli(capsys, "--format", "table", "--since", "7d")
    assert code == 0
    lines = out.splitlines()
    assert "Service" in lines[1] and "Consults" in lines[1] and "Answer med" in lines[1]
    rad = next(line for line in lines if line.startswith("radiology") and " all " in line)
    assert "1h 15m" in rad  # median time to answer of 2h and 30m
    widths = {len(line) for line in lines[1:3]}
    assert len(widths) == 1  # header and rule aligned
    assert not any(s in out for s in SECRETS)


def test_cli_default_format_is_table(cli_env, capsys):
    code, out, _ = run_cli(capsys)
    assert code == 0 and "Service" in out


def test_cli_unknown_service(cli_env, capsys):
    code, out, err = run_cli(capsys, "--service", "dermatology", "--format", "json")
    assert code == 2
    assert out == ""
    assert "dermatology" in err
    for key in ("radiology", "pathology", "cardiology"):
        assert key in err


@pytest.mark.parametrize("since", ["abc", "-3d", "0d", "30x"])
def test_cli_bad_since(cli_env, capsys, since):
    code, out, err = run_cli(capsys, f"--since={since}", "--format", "json")
    assert code == 2
    assert out == ""
    assert "--since" in err


# ------------------------------------------------------------------------ Slack
@pytest.fixture
def services(seeded, db_url, catalogue) -> Iterator[Services]:
    settings = Settings(
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_API_URL="http://127.0.0.1:9/api/",
        DATABASE_URL=db_url,
        CONSULT_CONFIG="unused.toml",
    )
    svc = build_services(settings, catalogue=catalogue, clock=FakeClock(NOW), run_migrations=False)
    yield svc
    svc.engine.dispose()


def for_stats(svc: Services) -> dict[str, Any]:
    return {
        "catalogue": svc.catalogue,
        "sessions": svc.sessions,
        "clock": svc.clock,
        "audit_refusal": svc.consults.audit_refusal,
    }


def for_digests(svc: Services) -> dict[str, Any]:
    return {
        "catalogue": svc.catalogue,
        "sessions": svc.sessions,
        "clock": svc.clock,
        "outbox": svc.outbox,
    }


def flatten(value: Any) -> str:
    return json.dumps(value)


def test_stats_for_lead(services):
    reply = stats_for_slack(**for_stats(services), user=RAD_LEAD, service=None, days=30)
    assert isinstance(reply, dict)
    assert "Radiology" in reply["text"]
    assert "Pathology" not in flatten(reply)  # leads see only what they lead
    assert len(reply["blocks"]) <= 50
    for block in reply["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
    body = flatten(reply["blocks"])
    assert "*8* consults" in body  # all but PATH-1 are radiology, within 30 days
    assert "<@UA>" in body and "<@UB>" in body
    assert not any(s in flatten(reply) for s in SECRETS)
    assert not any(ch.isdigit() for ch in reply["text"].split(":", 1)[1])  # fallback: no figures


def test_stats_refused_for_others(services):
    reply = stats_for_slack(**for_stats(services), user="UNOBODY", service="radiology", days=7)
    assert isinstance(reply, str)
    assert "Only the leads" in reply and "consults" not in reply
    reply = stats_for_slack(**for_stats(services), user="UPATHLEAD", service="rad", days=7)
    assert isinstance(reply, str) and "Only the leads" in reply
    reply = stats_for_slack(**for_stats(services), user="UNOBODY", service=None, days=7)
    assert isinstance(reply, str) and "don't lead" in reply
    with services.sessions() as s:
        refusals = s.execute(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "refused")
        ).scalar_one()
    assert refusals == 3


def test_stats_for_admin_and_unknown_service(services):
    reply = stats_for_slack(**for_stats(services), user="UADMIN", service=None, days=90)
    assert isinstance(reply, dict)
    body = flatten(reply)
    assert "Radiology" in body and "Pathology" in body and "Cardiology" in body
    reply = stats_for_slack(**for_stats(services), user="UADMIN", service="derm", days=90)
    assert isinstance(reply, str) and "radiology" in reply


def test_week_at_a_glance(services, catalogue):
    ctx = RenderContext(catalogue=catalogue, now=NOW)
    with services.sessions() as s:
        blocks = week_at_a_glance(
            session=s, services=[catalogue.service_by_key("radiology")], ctx=ctx
        )
    body = flatten(blocks)
    # Last 7 days before NOW: RAD-6 (cancelled) and RAD-8; overdue now: RAD-4, RAD-5, RAD-7.
    assert "Radiology" in body and "2 consults" in body
    for ref in ("RAD-4", "RAD-5", "RAD-7"):
        assert ref in body
    assert "RAD-8" not in body
    assert not any(s in body for s in SECRETS)


def test_home_view_for_lead_includes_week(services, catalogue):
    from bot.flows.home import build_home_view

    ctx = RenderContext(catalogue=catalogue, now=NOW)
    with services.sessions() as s:
        view = build_home_view(RAD_LEAD, session=s, ctx=ctx)
        other = build_home_view("UREQ9", session=s, ctx=ctx)
    assert "last 7 days" in flatten(view)
    assert "last 7 days" not in flatten(other)
    assert not any(secret in flatten(view) for secret in SECRETS)


# ------------------------------------------------------------------------ digest
def test_digest_chart_is_a_png(services):
    with services.sessions() as s:
        png = digest_chart_png(s, service="radiology", until=UNTIL)
        empty = digest_chart_png(s, service="cardiology", until=UNTIL)
    for data in (png, empty):
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert data[12:16] == b"IHDR"
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (800, 350)
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image.verify()
    assert not any(s.encode() in png for s in SECRETS)


def test_weekly_digest_queued_once_per_week(services):
    services.clock.set(T0 + timedelta(days=7, hours=8))  # Saturday 8:00 after the period
    assert send_weekly_digests(**for_digests(services)) == 3  # one lead per service
    services.clock.advance(timedelta(hours=2))
    assert send_weekly_digests(**for_digests(services)) == 0  # same ISO week: nothing new
    with services.sessions() as s:
        rows = s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()
    dms = [r for r in rows if r.kind == "dm"]
    uploads = [r for r in rows if r.kind == "upload"]
    assert sorted(r.payload["user"] for r in dms) == sorted([RAD_LEAD, "UPATHLEAD", "UCARDLEAD"])
    assert len(uploads) == 3
    rad = next(r for r in dms if r.payload["user"] == RAD_LEAD)
    assert rad.payload["template"] == "digest"
    assert rad.dedupe_key == f"digest:radiology:2026-W44:{RAD_LEAD}"
    params = rad.payload["params"]
    assert params["since"] == "2026-10-24T00:00:00Z" and params["until"] == "2026-10-31T00:00:00Z"
    assert (params["first_day"], params["last_day"]) == ("2026-10-24", "2026-10-30")
    assert params["this_week"]["consults"] == 6
    assert params["overdue"]["refs"] == ["RAD-7", "RAD-4", "RAD-5"]
    upload = next(r for r in uploads if r.payload["user"] == RAD_LEAD)
    assert upload.payload["template"] == "digest_chart"
    assert upload.payload["params"] == {"service": "radiology", "until": "2026-10-31T00:00:00Z"}
    assert not any(s in flatten([r.payload for r in rows]) for s in SECRETS)

    services.clock.advance(timedelta(days=7))  # next week: new digests
    assert send_weekly_digests(**for_digests(services)) == 3


def test_digest_week_in_the_digest_time_zone():
    berlin = parse_catalogue(TEST_CATALOGUE + '\n[digest]\ntimezone = "Europe/Berlin"\n', "t")
    week = digest_week(berlin, datetime(2026, 11, 2, 7, 0, tzinfo=UTC))  # Mon 08:00
    assert week.since == datetime(2026, 10, 25, 23, 0, tzinfo=UTC)
    assert week.until == datetime(2026, 11, 1, 23, 0, tzinfo=UTC)
    assert (week.first_day, week.last_day, week.iso_week) == (
        "2026-10-26",
        "2026-11-01",
        "2026-W45",
    )


def test_render_digest(services, catalogue):
    services.clock.set(T0 + timedelta(days=7, hours=8))
    send_weekly_digests(**for_digests(services))
    with services.sessions() as s:
        params = s.execute(
            select(OutboxMessage.payload).where(OutboxMessage.dedupe_key.like("digest:radiology%"))
        ).scalar_one()["params"]
    text_, blocks = render_digest(params, RenderContext(catalogue=catalogue, now=NOW))
    assert text_ == "Weekly CareLoop digest for Radiology"
    body = flatten(blocks)
    assert "Consults: *6* (week before: 1)" in body  # RAD-7 the week before
    assert "2026-10-24 to 2026-10-30" in body
    assert "Overdue now: 3" in body and "RAD-7, RAD-4, RAD-5" in body
    assert len(blocks) <= 50
    assert not any(s in body for s in SECRETS)


def test_split_percentile_queries_give_the_same_report(
    seeded, catalogue, monkeypatch, postgres_only
):
    """Large periods run as two concurrent queries (by id % 2): same figures."""
    single = report_for(seeded, catalogue)
    monkeypatch.setattr(postgres, "PARALLEL_MIN_ROWS", 1)
    calls = []
    elsewhere = postgres._elsewhere

    def spy(*args, **kwargs):
        calls.append(1)
        return elsewhere(*args, **kwargs)

    monkeypatch.setattr(postgres, "_elsewhere", spy)
    split = report_for(seeded, catalogue)
    assert calls, "the split path did not run"
    assert split == single
    assert by_service(split)["radiology"]["consults"] > 0


# ------------------------------------------------------------------------ typed report
def test_count_columns_follow_the_counts_fields():
    """The SQL aggregates are read into `Counts` by name, in the dataclass's own order."""
    assert tuple(queries.count_columns(NOW)) == COUNT_FIELDS


def test_counts_add_up_field_by_field():
    a = Counts(**{f: i for i, f in enumerate(COUNT_FIELDS)})
    a.add(Counts(**{f: 100 for f in COUNT_FIELDS}))
    assert [getattr(a, f) for f in COUNT_FIELDS] == [100 + i for i in range(len(COUNT_FIELDS))]


def test_empty_group_as_json():
    figures = Figures.of(Group(), open_now=2, open_overdue=1).as_dict()
    assert set(figures) == FIGURE_KEYS
    assert list(figures)[:7] == [
        "consults", "acknowledged", "answered", "closed", "cancelled", "open_now", "open_overdue"
    ]  # fmt: skip
    assert figures["time_to_answer"] == {"median": None, "p90": None}
    assert figures["waiting_on_requester"] == {
        "total": 0,
        "median": None,
        "p90": None,
        "consults": 0,
    }
    assert figures["feedback"] == {"count": 0, "helpful": 0, "helpful_share": None}
    assert (figures["open_now"], figures["open_overdue"], figures["within_sla"]) == (2, 1, None)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(None, "—"), (0, "0s"), (44.6, "45s"), (720, "12m"), (7500, "2h 05m"),
     (3 * 86400 + 4 * 3600 + 59, "3d 4h"), (-90, "-1m")],
)  # fmt: skip
def test_format_elapsed(seconds, expected):
    assert format_elapsed(seconds) == expected


def test_format_share():
    assert (format_share(None), format_share(0.834), format_share(1.0)) == ("—", "83%", "100%")


def test_stats_reply_stops_before_fifty_blocks_and_says_so():
    entry = Figures.of(Group(consults=1), 0, 0).as_dict()
    entry["by_urgency"] = {"stat": entry.copy()}
    entry["by_consultant"] = {"UA": entry.copy()}
    reply = stats_reply([(f"Service {i}", entry) for i in range(20)], days=7)
    assert len(reply["blocks"]) <= 50
    note = reply["blocks"][-1]["elements"][0]["text"]
    assert "Showing 16 of 20 services" in note
    assert reply["text"].endswith("Service 15")


def test_renderers_do_not_import_reports():
    """Render stays pure: the figures and digest renderers import no report (query) code."""
    for module in (render_figures, render_digest_module):
        tree = ast.parse(inspect.getsource(module))
        names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + [
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        ]
        assert not [n for n in names if n.startswith(("bot.reports", "storage", "sqlalchemy"))]
