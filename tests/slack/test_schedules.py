"""On-call schedules end to end over the Slack protocol, a fake clock driving the shift
boundaries: the on-call named on new cards follows the schedule, the unacknowledged card
moves at the change of shift and the incoming on-call gets one message, the outgoing one a
hand-off reminder whose button hands everything off, overrides end and the schedule
resumes, gaps are told to the leads once, a broken file keeps the last good schedule, and
two processes on one database send the shift-change message once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import build_schedules
from bot.domain.catalogue_load import CatalogueError, parse_catalogue
from bot.domain.clock import FakeClock
from bot.flows import shifts
from bot.settings import Settings
from bot.slack.ids import ActionId
from storage.models import AuditEvent
from tests.fake_slack import FakeSlack
from tests.harness import (
    CARD_CHANNEL,
    TEST_CATALOGUE,
    Bot,
    start_bot,
    use_postgres,
    wait_until,
)

NIGHT = "U0NIGHTD1"
DAY = "U0DAYDOC1"
JANE = "U0JANESM1"
COVER = "U0COVERS1"
LEAD = "UCARDLEAD"
FIXED = "UCARDON"
START = datetime(2026, 3, 16, 7, 0, tzinfo=UTC)

SCHEDULE = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Google Inc//Google Calendar 70.9054//EN
X-WR-TIMEZONE:UTC
BEGIN:VEVENT
UID:night@test
DTSTAMP:20260301T000000Z
DTSTART:20260315T200000Z
DTEND:20260316T080000Z
RRULE:FREQ=DAILY;COUNT=2
SUMMARY:Radiology night <@U0NIGHTD1>
END:VEVENT
BEGIN:VEVENT
UID:day@test
DTSTAMP:20260301T000000Z
DTSTART:20260316T080000Z
DTEND:20260316T200000Z
SUMMARY:Radiology day
DESCRIPTION:U0DAYDOC1
END:VEVENT
BEGIN:VEVENT
UID:late@test
DTSTAMP:20260301T000000Z
DTSTART:20260317T100000Z
DTEND:20260317T220000Z
SUMMARY:Radiology day: Dr Jane Smith
END:VEVENT
END:VCALENDAR
"""


def scheduled_catalogue(path: Path) -> str:
    """The test catalogue with radiology on a schedule (its fixed on-call the fallback)."""
    text = TEST_CATALOGUE.replace(
        'backup = "UCARDBK"', f'backup = "UCARDBK"\nschedule = "{path}"', 1
    )
    return 'people = { "Dr Jane Smith" = "U0JANESM1" }\n' + text


@pytest.fixture
def ics(tmp_path: Path) -> Path:
    path = tmp_path / "cardiology.ics"
    path.write_text(SCHEDULE)
    return path


@pytest.fixture
def sched(db_url: str, slack: FakeSlack, ics: Path) -> Iterator[Bot]:
    catalogue = parse_catalogue(scheduled_catalogue(ics), "test.toml")
    bot = start_bot(db_url, slack, catalogue=catalogue, clock=FakeClock(START))
    slack.set_members(CARD_CHANNEL, [FIXED, LEAD, NIGHT, DAY, JANE, COVER])
    yield bot
    bot.stop()


def watch(bot: Bot) -> shifts.ShiftRound:
    consults = bot.services.consults
    return shifts.watch_shifts(ctx=consults.ctx, roster=consults.roster)


def open_stat(bot: Bot, mrn: int) -> str:
    assert bot.command(f"cards stat MRN {mrn}: CT head?", trigger_id=f"t-{mrn}").status == 200
    return bot.consults()[-1].ref


def dms(bot: Bot, user: str, words: str) -> list[str]:
    bot.settle()
    return [t for t in bot.dm_texts(user) if words in t]


def test_shift_change_moves_the_waiting_card_and_tells_the_incoming_once(sched: Bot) -> None:
    watch(sched)  # the night shift began at 20:00 yesterday
    owned, waiting = open_stat(sched, 1), open_stat(sched, 2)
    assert sched.consult(waiting).on_call == NIGHT
    sched.command(f"ack {owned}", user=NIGHT)

    sched.clock.set(START + timedelta(minutes=50))  # 07:50: the night ends at 08:00
    assert watch(sched).reminded == 1
    watch(sched)
    [reminder] = dms(sched, NIGHT, "shift ends")
    assert owned in reminder and waiting not in reminder
    message = sched.slack.dms(NIGHT)[-1]
    assert any(
        e.get("action_id") == ActionId.HANDOFF_ALL and e.get("value") == DAY
        for b in message["blocks"]
        for e in b.get("elements", [])
    )

    sched.clock.set(START + timedelta(hours=1))  # 08:00: the day shift
    assert watch(sched).changed == ["cardiology"]
    assert watch(sched).changed == []
    assert sched.consult(waiting).on_call == DAY
    assert sched.consult(owned).assignee == NIGHT  # an owned consult keeps its owner
    [started] = dms(sched, DAY, "You are on call for")
    assert waiting in started and owned not in started
    assert sched.consult(open_stat(sched, 3)).on_call == DAY

    sched.click(ActionId.HANDOFF_ALL, DAY, user=NIGHT)
    assert wait_until(lambda: sched.consult(owned).assignee == DAY)
    sched.click(ActionId.HANDOFF_ALL, DAY, user=NIGHT)  # a double click: nothing left
    sched.settle()
    assert sched.consult(owned).handoff_count == 1


def test_override_for_a_while_then_the_schedule_resumes(sched: Bot) -> None:
    sched.clock.set(START + timedelta(hours=2))  # 09:00, the day shift
    watch(sched)
    resp = sched.command(f"oncall cards <@{COVER}> for 2h", user=LEAD)
    assert "is now on call for Cardiology until" in resp.text
    ref = open_stat(sched, 4)
    assert sched.consult(ref).on_call == COVER
    with sched.services.sessions() as s:
        [audit] = s.execute(
            select(AuditEvent).where(AuditEvent.action == "on_call_changed")
        ).scalars()
        assert audit.actor == LEAD and audit.details["until"] == "2026-03-16T11:00:00+00:00"
    listing = sched.command("oncall", user=LEAD).text
    assert f"<@{COVER}>" in listing and "override" in listing and f"next <@{DAY}>" in listing

    sched.clock.set(START + timedelta(hours=4))  # 11:00: the override ended
    assert watch(sched).changed == ["cardiology"]
    assert sched.consult(ref).on_call == DAY
    assert any(ref in t for t in dms(sched, DAY, "You are on call for"))
    assert "override" not in sched.command("oncall", user=LEAD).text


def test_override_without_length_lasts_to_the_end_of_the_shift(sched: Bot) -> None:
    sched.clock.set(START + timedelta(hours=2))
    sched.command(f"oncall cards <@{COVER}>", user=DAY)
    sched.clock.set(START + timedelta(hours=12, minutes=59))  # 19:59
    assert sched.consult(open_stat(sched, 5)).on_call == COVER
    sched.clock.set(START + timedelta(hours=13))  # 20:00: the night, not the override
    assert sched.consult(open_stat(sched, 6)).on_call == NIGHT


def test_a_gap_is_told_to_the_leads_once_and_consults_go_to_the_fallback(sched: Bot) -> None:
    sched.clock.set(START + timedelta(hours=14))  # 21:00: tomorrow 08:00-10:00 is empty
    assert watch(sched).gaps == 1
    watch(sched)
    [gap] = dms(sched, LEAD, "Nobody is scheduled")
    assert f"<@{FIXED}>" in gap
    sched.clock.set(START + timedelta(days=1, hours=2))  # 09:00 tomorrow, in the gap
    assert sched.consult(open_stat(sched, 7)).on_call == FIXED
    sched.clock.set(START + timedelta(days=1, hours=4))  # 11:00: Jane, from [people]
    assert sched.consult(open_stat(sched, 8)).on_call == JANE


def test_a_broken_file_keeps_the_last_good_schedule_and_tells_the_leads_once(
    sched: Bot, ics: Path
) -> None:
    ics.write_text("this is not a calendar")
    consults = sched.services.consults
    assert consults.schedules is not None
    assert shifts.refresh(ctx=consults.ctx, book=consults.schedules) == 1
    assert "could not be loaded" in sched.command("oncall reload", user=LEAD).text
    [problem] = dms(sched, LEAD, "could not be loaded")
    assert "not an iCalendar file" in problem
    assert sched.consult(open_stat(sched, 9)).on_call == NIGHT  # still the last good one
    assert "Only a service lead" in sched.command("oncall reload", user=NIGHT).text


def test_start_up_with_a_broken_schedule_is_one_line(tmp_path: Path, ics: Path) -> None:
    ics.write_text("BEGIN:VCALENDAR\nVERSION:2.0\nEND:VCALENDAR\n")
    catalogue = parse_catalogue(scheduled_catalogue(ics), "test.toml")
    settings = Settings(SLACK_BOT_TOKEN="xoxb-test", CONSULT_CONFIG=str(tmp_path / "consult.toml"))
    with pytest.raises(CatalogueError) as err:
        build_schedules(settings, catalogue, FakeClock(START), None)
    assert str(err.value) == (
        f"{tmp_path / 'consult.toml'}: services[2].schedule: {ics}: the calendar has no events"
    )


def test_attendee_emails_are_looked_up_in_slack_once(
    db_url: str, slack: FakeSlack, ics: Path
) -> None:
    ics.write_text(
        SCHEDULE.replace(
            "DESCRIPTION:U0DAYDOC1", "ATTENDEE;CN=Day Doc:mailto:day.doc@hospital.example"
        )
    )
    slack.set_email(DAY, "Day.Doc@hospital.example")
    catalogue = parse_catalogue(scheduled_catalogue(ics), "test.toml")
    bot = start_bot(db_url, slack, catalogue=catalogue, clock=FakeClock(START + timedelta(hours=2)))
    try:
        assert bot.consult(open_stat(bot, 10)).on_call == DAY
        assert bot.services.consults.schedules is not None
        bot.services.consults.schedules.refresh()
        assert len([c for c in slack.calls if c.method == "users.lookupByEmail"]) == 1
    finally:
        bot.stop()


def test_two_processes_send_the_shift_change_message_once(
    db_url: str, slack: FakeSlack, sched: Bot, ics: Path
) -> None:
    catalogue = parse_catalogue(scheduled_catalogue(ics), "test.toml")
    twin = start_bot(db_url, slack, catalogue=catalogue, clock=sched.clock)
    try:
        watch(sched)
        waiting = open_stat(sched, 11)
        sched.clock.set(START + timedelta(hours=1))
        rounds: list[shifts.ShiftRound] = []
        threads = [
            threading.Thread(target=lambda b=b: rounds.append(watch(b))) for b in (sched, twin)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(len(r.changed) for r in rounds) == [0, 1]
        twin.settle()
        [started] = dms(sched, DAY, "You are on call for")
        assert waiting in started
    finally:
        twin.stop()


def test_app_home_shows_the_shift_now_and_the_next_one(sched: Bot) -> None:
    sched.clock.set(START + timedelta(hours=2))  # 09:00, the day shift until 20:00
    before = len(sched.slack.calls_to("views.publish"))
    sched.sender.event({"type": "app_home_opened", "user": DAY, "tab": "home", "channel": "DX"})
    assert wait_until(lambda: len(sched.slack.calls_to("views.publish")) > before)
    home = str(sched.slack.calls_to("views.publish")[-1].args["view"])
    assert "On call now for Cardiology until" in home
    assert str(int((START + timedelta(hours=13)).timestamp())) in home  # 20:00
    sched.sender.event({"type": "app_home_opened", "user": JANE, "tab": "home", "channel": "DX"})
    assert wait_until(lambda: len(sched.slack.calls_to("views.publish")) > before + 1)
    jane = str(sched.slack.calls_to("views.publish")[-1].args["view"])
    assert "On call now" not in jane and "Next shift: Cardiology" in jane


def test_overlapping_shifts_name_and_nudge_both(db_url: str, slack: FakeSlack, ics: Path) -> None:
    ics.write_text(
        SCHEDULE.replace("DESCRIPTION:U0DAYDOC1", "DESCRIPTION:U0DAYDOC1 with <@U0SECOND1>")
    )
    catalogue = parse_catalogue(scheduled_catalogue(ics), "test.toml")
    bot = start_bot(db_url, slack, catalogue=catalogue, clock=FakeClock(START + timedelta(hours=2)))
    try:
        listing = bot.command("oncall", user=LEAD).text
        assert f"<@{DAY}>, <@U0SECOND1>" in listing
        ref = open_stat(bot, 12)
        bot.settle()
        both = f"<@{DAY}>, <@U0SECOND1>"
        card = str(bot.card(ref)["blocks"])
        assert f"waiting for {both} to acknowledge" in card
        assert f"*On call*\\n{both}" in card
        assert bot.consult(ref).on_call == DAY  # the first one; role checks compare it
        confirmation = [t for t in bot.dm_texts("UREQ1") if ref in t and "On call:" in t]
        assert confirmation and all(f"On call: {both} ·" in t for t in confirmation)
        bot.clock.advance(timedelta(minutes=20))
        assert ref in bot.sweep().nudged
        bot.settle()
        assert any(f"<@{DAY}>" in t and "<@U0SECOND1>" in t for t in bot.thread_texts(ref))
    finally:
        bot.stop()


def test_every_process_schedules_the_shift_and_refresh_jobs(sched: Bot, bot: Bot) -> None:
    from bot.runtime import build_scheduler

    scheduler = build_scheduler(sched.services)  # not started: no threads
    assert scheduler.get_job("shifts") is not None
    refresh = scheduler.get_job("schedule-refresh")
    assert refresh is not None and refresh.trigger.interval == timedelta(minutes=15)
    assert build_scheduler(bot.services).get_job("shifts") is None  # no schedules


def test_the_report_days_fill_is_scheduled_on_postgresql_only(bot: Bot) -> None:
    """`bot.reports.days.fill` every hour, the first five minutes after start, on
    PostgreSQL; SQLite's reports compute live and get no job."""
    from bot.runtime import build_scheduler

    job = build_scheduler(bot.services).get_job("report-days")
    assert (job is not None) == use_postgres()
    if job is not None:
        assert job.trigger.interval == timedelta(hours=1)
        assert job.next_run_time - bot.services.clock.now() > timedelta(minutes=4)


def test_a_colleague_joining_and_leaving_the_shift_redraws_the_waiting_card(
    db_url: str, slack: FakeSlack, ics: Path
) -> None:
    extra = (
        "BEGIN:VEVENT\nUID:extra@test\nDTSTAMP:20260301T000000Z\nDTSTART:20260316T100000Z\n"
        "DTEND:20260316T120000Z\nSUMMARY:Radiology extra\nDESCRIPTION:U0SECOND1\nEND:VEVENT\n"
    )
    ics.write_text(SCHEDULE.replace("END:VCALENDAR", extra + "END:VCALENDAR"))
    catalogue = parse_catalogue(scheduled_catalogue(ics), "test.toml")
    bot = start_bot(db_url, slack, catalogue=catalogue, clock=FakeClock(START + timedelta(hours=2)))
    try:
        ref = open_stat(bot, 13)
        bot.settle()
        assert f"waiting for <@{DAY}> to acknowledge" in str(bot.card(ref)["blocks"])
        bot.clock.set(START + timedelta(hours=3, minutes=1))  # 10:01: the extra shift starts
        assert watch(bot).changed == ["cardiology"]
        bot.settle()
        both = f"waiting for <@{DAY}>, <@U0SECOND1> to acknowledge"
        assert both in str(bot.card(ref)["blocks"])
        assert bot.consult(ref).on_call == DAY
        bot.clock.set(START + timedelta(hours=5, minutes=1))  # 12:01: it ends
        assert watch(bot).changed == ["cardiology"]
        bot.settle()
        assert f"waiting for <@{DAY}> to acknowledge" in str(bot.card(ref)["blocks"])
    finally:
        bot.stop()
