"""A weekly digest missed while no bot process ran: sent late, once, at the next start within
24 hours of its scheduled time (for the week it belongs to), skipped with a log line after.

`last_digest_time` is checked on its own and against the scheduler's own cron trigger; the
start-up catch-up is run directly (`catch_up_digest`, what the scheduler's one-off job runs)
with a fake clock, against the fake Slack, on the test database."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select

from bot.dev.fakeslack import FakeSlack
from bot.domain.catalogue import Catalogue
from bot.domain.catalogue_load import parse_catalogue
from bot.domain.clock import FakeClock
from bot.reports.digest import last_digest_time
from bot.runtime import DIGEST_CATCH_UP, build_scheduler, catch_up_digest
from storage.models import OutboxMessage
from tests.harness import RAD_LEAD, TEST_CATALOGUE, Bot, start_bot

LEADS = ("UCARDLEAD", "UPATHLEAD", RAD_LEAD)


def catalogue(day: str = "sun", at: str = "22:00", tz: str = "America/New_York", **kw) -> Catalogue:
    extra = "".join(f"{k} = {str(v).lower()}\n" for k, v in kw.items())
    digest = f'\n[digest]\nday = "{day}"\ntime = "{at}"\ntimezone = "{tz}"\n{extra}'
    return parse_catalogue(TEST_CATALOGUE + digest, "test.toml")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ------------------------------------------------------------------ last_digest_time
LONDON_MON_7 = catalogue("mon", "07:00", "Europe/London")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # Monday 9 Nov 2026 (GMT = UTC): before, at and after 07:00 on the day.
        (utc(2026, 11, 9, 6, 59), utc(2026, 11, 2, 7, 0)),
        (utc(2026, 11, 9, 7, 0), utc(2026, 11, 9, 7, 0)),
        (utc(2026, 11, 9, 7, 1), utc(2026, 11, 9, 7, 0)),
        (utc(2026, 11, 9, 23, 59), utc(2026, 11, 9, 7, 0)),
        # Later in the week, and the Sunday night before the next one.
        (utc(2026, 11, 12, 12, 0), utc(2026, 11, 9, 7, 0)),
        (utc(2026, 11, 15, 23, 59), utc(2026, 11, 9, 7, 0)),
        # Across the new year (ISO week 2026-W53 to 2027-W01).
        (utc(2027, 1, 4, 8, 0), utc(2027, 1, 4, 7, 0)),
        (utc(2027, 1, 3, 8, 0), utc(2026, 12, 28, 7, 0)),
        # Clocks go forward on Sunday 29 March 2026: 07:00 BST is 06:00 UTC.
        (utc(2026, 3, 30, 5, 59), utc(2026, 3, 23, 7, 0)),
        (utc(2026, 3, 30, 6, 0), utc(2026, 3, 30, 6, 0)),
        # ...and back on Sunday 25 October 2026: 07:00 GMT again.
        (utc(2026, 10, 26, 6, 30), utc(2026, 10, 19, 6, 0)),
        (utc(2026, 10, 26, 7, 0), utc(2026, 10, 26, 7, 0)),
    ],
)
def test_last_digest_time_london_monday_7am(now: datetime, expected: datetime):
    assert last_digest_time(LONDON_MON_7, now) == expected


def test_last_digest_time_week_boundary_in_new_york():
    # Sunday 22:00 in New York is Monday 03:00 UTC (EST): a UTC Monday can still be the
    # local Sunday before the digest.
    cat = catalogue("sun", "22:00", "America/New_York")
    assert last_digest_time(cat, utc(2026, 11, 9, 2, 59)) == utc(2026, 11, 2, 3, 0)
    assert last_digest_time(cat, utc(2026, 11, 9, 3, 0)) == utc(2026, 11, 9, 3, 0)
    # Sunday 1 November 2026 is the day New York leaves DST: 22:00 that day is already EST.
    assert last_digest_time(cat, utc(2026, 11, 2, 4, 0)) == utc(2026, 11, 2, 3, 0)
    # The week before, 22:00 EDT is 02:00 UTC.
    assert last_digest_time(cat, utc(2026, 11, 2, 2, 59)) == utc(2026, 10, 26, 2, 0)


def test_last_digest_time_on_a_dst_gap_and_overlap_matches_the_scheduler():
    cat = catalogue("sun", "01:30", "Europe/London")
    # 01:30 does not exist on 29 March 2026 in London; the scheduler fires at 02:30 BST.
    assert last_digest_time(cat, utc(2026, 3, 29, 12, 0)) == utc(2026, 3, 29, 1, 30)
    # 01:30 happens twice on 25 October 2026 and the scheduler fires at both (same day,
    # same digest week): 01:30 BST, then 01:30 GMT an hour later.
    assert last_digest_time(cat, utc(2026, 10, 25, 0, 29)) == utc(2026, 10, 18, 0, 30)
    assert last_digest_time(cat, utc(2026, 10, 25, 1, 0)) == utc(2026, 10, 25, 0, 30)
    assert last_digest_time(cat, utc(2026, 10, 25, 12, 0)) == utc(2026, 10, 25, 1, 30)


def test_last_digest_time_is_none_when_the_digest_is_off():
    assert last_digest_time(catalogue(enabled=False), utc(2026, 11, 9, 12, 0)) is None


@pytest.mark.parametrize(
    ("day", "at", "tz"),
    [
        ("mon", "07:00", "Europe/London"),
        ("sun", "01:30", "Europe/London"),
        ("sun", "02:30", "America/New_York"),
        ("sat", "23:59", "Australia/Lord_Howe"),  # 30-minute DST shift
        ("wed", "00:00", "UTC"),
    ],
)
def test_last_digest_time_agrees_with_the_cron_trigger_all_year(day: str, at: str, tz: str):
    """Every instant of 2026 (in 97-minute steps) against the times the scheduler's cron job
    fires, chained from one run to the next as a running scheduler chains them."""
    cat = catalogue(day, at, tz)
    hour, minute = (int(x) for x in at.split(":"))
    trigger = CronTrigger(day_of_week=day, hour=hour, minute=minute, timezone=tz)
    fires = [trigger.get_next_fire_time(None, utc(2025, 12, 20))]
    while fires[-1] < utc(2027, 1, 1):
        fires.append(trigger.get_next_fire_time(fires[-1], fires[-1]))
    fires = [f.astimezone(UTC) for f in fires]  # a gap time compares unequal across zones
    now = utc(2026, 1, 1, 0, 7)
    while now < utc(2027, 1, 1):
        expected = max(f for f in fires if f <= now)
        assert last_digest_time(cat, now) == expected, now
        now += timedelta(minutes=97)


# ------------------------------------------------------------------ start-up catch-up
# Digest on Sundays at 22:00 New York time. Sunday 8 Nov 2026, 22:00 EST = Mon 03:00 UTC,
# ISO week 2026-W45; it covers the local days 1 to 7 November.
DUE = utc(2026, 11, 9, 3, 0)
WEEK = "2026-W45"
CATALOGUE = catalogue("sun", "22:00", "America/New_York")


@pytest.fixture
def bots(db_url: str, slack: FakeSlack) -> Iterator[list[Bot]]:
    """The bots a test starts (`start`), each a process of its own; stopped at the end."""
    started: list[Bot] = []
    yield started
    for b in started:
        b.stop()


def start(db_url: str, slack: FakeSlack, bots: list[Bot], now: datetime) -> Bot:
    running = start_bot(db_url, slack, catalogue=CATALOGUE, clock=FakeClock(now))
    bots.append(running)
    return running


def digest_dms(bot: Bot, lead: str) -> list[str]:
    return [t for t in bot.dm_texts(lead) if "Weekly digest" in t]


def digest_keys(bot: Bot) -> list[str]:
    with bot.services.sessions() as s:
        return sorted(
            s.execute(
                select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.like("digest%"))
            ).scalars()
        )


def with_consults(bot: Bot) -> tuple[str, str]:
    """One cardiology consult answered in the digest's week, one opened on the digest's own
    Sunday (in the week a digest computed from the start time would cover), and one opened
    5 minutes before the digest time, overdue only by the start time."""
    bot.clock.set(utc(2026, 11, 1, 17, 0))  # Sun 1 Nov, 12:00 EST
    in_week = bot.open("cards routine MRN 1001: murmur, echo needed?")
    bot.command(f"answer {in_week} Yes, book an echo.", user="UCARDON")
    bot.clock.set(utc(2026, 11, 8, 17, 0))  # Sun 8 Nov, 12:00 EST: the digest's day
    same_day = bot.open("cards routine MRN 1002: palpitations?")
    bot.command(f"answer {same_day} Holter monitor.", user="UCARDON")
    bot.clock.set(DUE - timedelta(minutes=5))
    late = bot.open("cards stat MRN 1003: chest pain?")
    bot.settle()
    return in_week, late


def test_started_3h_after_the_digest_time_sends_it_once_for_its_week(
    db_url: str, slack: FakeSlack, bots: list[Bot], monkeypatch: pytest.MonkeyPatch
):
    first = start(db_url, slack, bots, utc(2026, 11, 1, 12, 0))
    _, late = with_consults(first)
    first.clock.set(DUE + timedelta(hours=3))  # Mon 9 Nov 01:00 EST: next day, ISO week 46

    assert catch_up_digest(first.services) == 3
    first.settle(timeout=30)

    assert digest_keys(first) == sorted(
        f"{prefix}:{service}:{WEEK}:{lead}"
        for prefix in ("digest", "digest-chart")
        for service, lead in zip(("cardiology", "pathology", "radiology"), LEADS, strict=True)
    )
    for lead in LEADS:
        texts = digest_dms(first, lead)
        assert len(texts) == 1, lead
        assert "Consults opened 2026-11-01 to 2026-11-07" in texts[0]
    cardiology = digest_dms(first, "UCARDLEAD")[0]
    # The week before the scheduled Sunday: the 1 Nov consult, not the 8 Nov ones.
    assert "Consults: *1* (week before: 0)" in cardiology
    assert "Answered: *1* (week before: 0)" in cardiology
    # What is overdue is as of now (the stat consult was not yet overdue at 22:00).
    assert f"Overdue now: 1* — {late}" in cardiology
    assert "Consults: *0* (week before: 0)" in digest_dms(first, "UPATHLEAD")[0]
    assert len(slack.uploads) == 3

    # The same process again, and a second process starting later: nothing more, and no
    # figures computed just to find that out (a restart must stay cheap).
    def no_report(*args: object, **kwargs: object) -> None:
        raise AssertionError("computed a report for a digest already sent")

    monkeypatch.setattr("bot.reports.digest.compute_report", no_report)
    assert catch_up_digest(first.services) == 0
    second = start(db_url, slack, bots, DUE + timedelta(hours=5))
    assert catch_up_digest(second.services) == 0
    second.settle()
    first.settle()
    assert all(len(digest_dms(first, lead)) == 1 for lead in LEADS)
    assert len(slack.uploads) == 3


def test_processes_starting_together_send_each_digest_once(
    db_url: str, slack: FakeSlack, bots: list[Bot]
):
    running = [start(db_url, slack, bots, DUE + timedelta(minutes=30)) for _ in range(3)]
    barrier = threading.Barrier(len(running))
    queued: list[int] = []

    def boot(b: Bot) -> None:
        barrier.wait()
        queued.append(catch_up_digest(b.services))

    threads = [threading.Thread(target=boot, args=(b,)) for b in running]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(queued) == 3 and sum(queued) == 3
    for b in running:
        b.settle(timeout=30)
    assert all(len(digest_dms(running[0], lead)) == 1 for lead in LEADS)
    assert len(slack.uploads) == 3


@pytest.mark.parametrize("lateness", [DIGEST_CATCH_UP, timedelta(days=2)])
def test_started_too_long_after_the_digest_time_skips_it_and_says_so(
    db_url: str,
    slack: FakeSlack,
    bots: list[Bot],
    caplog: pytest.LogCaptureFixture,
    lateness: timedelta,
):
    b = start(db_url, slack, bots, utc(2026, 11, 1, 12, 0))
    with_consults(b)
    b.clock.set(DUE + lateness)
    with caplog.at_level(logging.INFO, logger="careloop.runtime"):
        assert catch_up_digest(b.services) == 0
    b.settle()
    assert digest_keys(b) == []
    assert not any(digest_dms(b, lead) for lead in LEADS)
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1
    assert skipped[0].levelno == logging.INFO
    assert WEEK in skipped[0].getMessage()
    assert skipped[0].service == "radiology,pathology,cardiology"  # type: ignore[attr-defined]
    assert "MRN" not in skipped[0].getMessage()


def test_just_inside_the_window_still_catches_up(db_url: str, slack: FakeSlack, bots: list[Bot]):
    b = start(db_url, slack, bots, DUE + DIGEST_CATCH_UP - timedelta(seconds=1))
    assert catch_up_digest(b.services) == 3
    b.settle(timeout=30)
    assert all(digest_dms(b, lead) for lead in LEADS)


def test_a_digest_sent_on_time_is_not_reported_as_skipped(
    db_url: str, slack: FakeSlack, bots: list[Bot], caplog: pytest.LogCaptureFixture
):
    b = start(db_url, slack, bots, DUE)
    assert catch_up_digest(b.services) == 3  # or the cron job: same keys
    b.clock.set(DUE + timedelta(days=3))
    with caplog.at_level(logging.INFO, logger="careloop.runtime"):
        assert catch_up_digest(b.services) == 0
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]


def test_the_scheduler_runs_the_catch_up_once_at_start_and_logs_failures(
    db_url: str,
    slack: FakeSlack,
    bots: list[Bot],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    b = start(db_url, slack, bots, DUE + timedelta(hours=3))
    scheduler = build_scheduler(b.services)  # not started: no threads, no waiting
    job = scheduler.get_job("digest-catch-up")
    assert job is not None and job.trigger.__class__.__name__ == "DateTrigger"
    job.func()
    b.settle(timeout=30)
    assert all(len(digest_dms(b, lead)) == 1 for lead in LEADS)

    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("database gone")

    monkeypatch.setattr("bot.reports.digest.digests_not_queued", broken)
    with caplog.at_level(logging.ERROR, logger="careloop.runtime"):
        job.func()  # logged, never raised
    failed = [r for r in caplog.records if r.name == "careloop.runtime"]
    assert [r.event for r in failed] == ["digest-catch-up"]  # type: ignore[attr-defined]


def test_no_catch_up_when_the_digest_is_off(db_url: str, slack: FakeSlack, bots: list[Bot]):
    off = start_bot(
        db_url, slack, catalogue=catalogue(enabled=False), clock=FakeClock(DUE + timedelta(hours=1))
    )
    bots.append(off)
    assert catch_up_digest(off.services) == 0
    assert build_scheduler(off.services).get_job("digest-catch-up") is None
    assert digest_keys(off) == []
