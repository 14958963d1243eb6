"""The schedule parser on calendars shaped like real exports (Google Calendar with TZID, an
exception and a moved instance; Outlook all-day fortnightly weeks with attendees; an Amion
export naming somebody nobody knows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.domain.schedule import (
    ScheduleError,
    gaps,
    last_change,
    next_change,
    on_call_at,
    parse_calendar,
    shifts,
)

HERE = Path(__file__).parent / "ics"
NOW = datetime(2026, 3, 16, tzinfo=UTC)
PEOPLE = {"Dr Jane Smith": "U0JANESM1"}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def load(name: str):
    return parse_calendar((HERE / name).read_text(), now=NOW)


def test_google_weekly_rotation_with_tzid_exdate_and_moved_instance() -> None:
    cal = load("google_weekly.ics")
    found = shifts(cal, start=utc(2026, 3, 16), end=utc(2026, 4, 3), people=PEOPLE)
    # London is on GMT until 29 March: 08:00 local is 08:00 UTC.
    assert on_call_at(found, utc(2026, 3, 16, 9)) == ("U0DAYDOC1",)
    assert on_call_at(found, utc(2026, 3, 16, 21)) == ("U0JANESM1",)
    # The moved Wednesday starts at 10:00 with someone else; the night ended at 08:00,
    # so 08:00–10:00 is a gap.
    assert on_call_at(found, utc(2026, 3, 18, 9)) == ()
    assert on_call_at(found, utc(2026, 3, 18, 11)) == ("U0DAYDOC2",)
    assert (utc(2026, 3, 18, 8), utc(2026, 3, 18, 10)) in gaps(
        found, utc(2026, 3, 18), utc(2026, 3, 19)
    )
    # EXDATE: no day shift on Friday 20 March.
    assert on_call_at(found, utc(2026, 3, 20, 12)) == ()
    # After the DST change (29 March) 08:00 London is 07:00 UTC.
    assert on_call_at(found, utc(2026, 3, 30, 7, 30)) == ("U0DAYDOC1",)
    assert next_change(found, utc(2026, 3, 30, 7, 30)) == utc(2026, 3, 30, 19)
    assert last_change(found, utc(2026, 3, 30, 7, 30)) == utc(2026, 3, 30, 7)


def test_outlook_all_day_weeks_resolve_attendees_by_email() -> None:
    cal = load("outlook_allday.ics")
    assert cal.emails() == {"sam.patel@hospital.example", "lee.chan@hospital.example"}
    emails = {"sam.patel@hospital.example": "U0SAMPAT1", "lee.chan@hospital.example": "U0LEECHA1"}
    found = shifts(cal, start=utc(2026, 3, 1), end=utc(2026, 4, 1), emails=emails)
    # All-day weeks run midnight to midnight New York time (UTC-5 before 8 March).
    assert found[0].start == utc(2026, 3, 2, 5)
    assert on_call_at(found, utc(2026, 3, 4)) == ("U0SAMPAT1",)
    assert on_call_at(found, utc(2026, 3, 12)) == ("U0LEECHA1",)
    assert on_call_at(found, utc(2026, 3, 18)) == ("U0SAMPAT1",)  # fortnightly: week 3


def test_an_unknown_person_is_reported_never_guessed() -> None:
    cal = load("unknown_person.ics")
    found = shifts(cal, start=utc(2026, 3, 16), end=utc(2026, 3, 18), people=PEOPLE)
    assert found[0].people == ()
    assert found[0].unresolved == "Cardiology call - Dr Nobody Known"
    assert found[1].people == ("U0JANESM1",)
    assert on_call_at(found, utc(2026, 3, 16, 9)) == ()
    # An unresolved attendee e-mail is not matched either.
    outlook = shifts(load("outlook_allday.ics"), start=utc(2026, 3, 1), end=utc(2026, 3, 8))
    assert outlook[0].people == () and outlook[0].unresolved


def test_overlapping_events_name_both() -> None:
    text = (
        (HERE / "unknown_person.ics")
        .read_text()
        .replace("Dr Nobody Known", "<@U0FIRST01> and <@U0SECOND1>")
        .replace("DTSTART:20260316T200000Z", "DTSTART:20260316T180000Z")
    )
    found = shifts(
        parse_calendar(text, now=NOW), start=utc(2026, 3, 16), end=utc(2026, 3, 18), people=PEOPLE
    )
    assert on_call_at(found, utc(2026, 3, 16, 19)) == ("U0FIRST01", "U0SECOND1", "U0JANESM1")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("hello", "not an iCalendar file"),
        ("BEGIN:VCALENDAR\nVERSION:2.0\nEND:VCALENDAR\n", "no events"),
    ],
)
def test_broken_calendars_are_one_line_errors(text: str, problem: str) -> None:
    with pytest.raises(ScheduleError, match=problem) as err:
        parse_calendar(text, now=NOW)
    assert "\n" not in str(err.value)


def test_gaps_cover_the_whole_window_when_nobody_is_scheduled() -> None:
    start = utc(2026, 1, 1)
    assert gaps([], start, start + timedelta(hours=12)) == [(start, start + timedelta(hours=12))]


def test_oncall_command_reads_reload_and_override_lengths() -> None:
    from bot.domain.parsing import parse

    assert parse("oncall reload").extra == {"reload": "yes"}
    assert parse("oncall rad <@U0COVER01> for 4h").extra == {"for": "4h"}
    until = parse("oncall rad <@U0COVER01> until 18:00")
    assert (until.service, until.user, until.extra) == ("rad", "U0COVER01", {"until": "18:00"})
    assert parse("oncall rad <@U0COVER01>").extra == {}
    assert parse("oncall rad <@U0COVER01> for ever").error
    assert parse("oncall rad <@U0COVER01> during 4h").error


def test_override_end_for_a_length_or_until_a_clock_time_in_the_zone() -> None:
    from bot.domain.schedule import override_end

    now = utc(2026, 7, 1, 16)  # 17:00 in London (BST)
    assert override_end(now, hours=timedelta(hours=4), clock_time=None, zone="UTC") == utc(
        2026, 7, 1, 20
    )
    assert override_end(now, hours=None, clock_time="18:00", zone="Europe/London") == utc(
        2026, 7, 1, 17
    )
    assert override_end(now, hours=None, clock_time="08:00", zone="Europe/London") == utc(
        2026, 7, 2, 7
    )
    assert override_end(now, hours=None, clock_time=None, zone="UTC") is None
    with pytest.raises(ValueError, match="not a time"):
        override_end(now, hours=None, clock_time="25:00", zone="UTC")


def test_catalogue_keys_for_schedules() -> None:
    from bot.domain.catalogue_load import CatalogueError, parse_catalogue

    base = '[[services]]\nkey = "rad"\nname = "Radiology"\nchannel = "CRAD"\n'
    catalogue = parse_catalogue(
        'people = { "Dr Jane Smith" = "U0JANESM1" }\nhandoff_reminder = "30m"\n'
        + base
        + 'schedule = "rad.ics"\nleads = ["U0LEAD001"]\n'
    )
    assert catalogue.people == {"Dr Jane Smith": "U0JANESM1"}
    assert catalogue.handoff_reminder == timedelta(minutes=30)
    assert catalogue.schedule_refresh == timedelta(minutes=15)
    assert catalogue.coverage_warning == timedelta(hours=12)
    assert [s.key for s in catalogue.scheduled()] == ["rad"]
    with pytest.raises(CatalogueError, match=r"services\[0\].on_call: field required"):
        parse_catalogue(base)
    with pytest.raises(CatalogueError, match="name a backup, backup_schedule or leads"):
        parse_catalogue(base + 'schedule = "rad.ics"\n')


def test_a_schedule_url_is_shown_without_its_secret_path() -> None:
    from bot.flows.schedules import shown

    secret = "https://calendar.google.com/calendar/ical/x%40group/private-abc123/basic.ics"
    assert shown(secret) == "https://calendar.google.com/…"
    assert shown("schedules/radiology.ics") == "schedules/radiology.ics"
