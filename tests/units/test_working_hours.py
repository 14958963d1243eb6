"""bot.domain.hours: parsing specs, and counting working time across nights, weekends and DST."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.domain.hours import WorkingHours, parse_timezone

LONDON = ZoneInfo("Europe/London")
TORONTO = ZoneInfo("America/Toronto")


def london(*args: int) -> datetime:
    return datetime(*args, tzinfo=LONDON)


@pytest.fixture
def office() -> WorkingHours:
    return WorkingHours.parse("Mon-Fri 08:00-18:00", "Europe/London")


# ---------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("spec", "normalized"),
    [
        ("Mon-Fri 08:00-18:00", "Mon-Fri 08:00-18:00"),
        ("mon-fri 8:00-18:00", "Mon-Fri 08:00-18:00"),
        ("Mon-Fri 08:00-18:00; Sat 09:00-13:00", "Mon-Fri 08:00-18:00; Sat 09:00-13:00"),
        ("Mon,Wed 07:30-12:00, Tue 13:00-17:00", "Mon,Wed 07:30-12:00; Tue 13:00-17:00"),
        ("Mon - Fri 08:00 - 18:00;", "Mon-Fri 08:00-18:00"),
        ("Sat-Mon 00:00-24:00", "Mon,Sat-Sun 00:00-24:00"),
        # Overlapping and touching windows on one day merge.
        ("Mon 08:00-12:00; Mon 11:00-13:00; Mon 13:00-14:00", "Mon 08:00-14:00"),
        ("Mon-Fri 08:00-12:00; Mon-Fri 13:00-17:00", "Mon-Fri 08:00-12:00; Mon-Fri 13:00-17:00"),
    ],
)
def test_parse_normalizes(spec: str, normalized: str) -> None:
    hours = WorkingHours.parse(spec)
    assert str(hours) == normalized
    assert WorkingHours.parse(str(hours)) == hours  # the normal form reads back the same


def test_parse_keeps_the_timezone() -> None:
    hours = WorkingHours.parse("Mon 08:00-09:00", "America/Toronto")
    assert hours.timezone == "America/Toronto"
    assert hours != WorkingHours.parse("Mon 08:00-09:00", "UTC")
    assert hours.week[0] == ((8 * 60, 9 * 60),) and hours.week[1] == ()


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "working hours are empty"),
        (" ; ", "no working time at all"),
        ("Mon", "is not '<days> HH:MM-HH:MM'"),
        ("Mon-Fri 8-18", "is not '<days> HH:MM-HH:MM'"),
        ("Mon-Fri 08:00-18:00 Sat 09:00-13:00", "is not '<days> HH:MM-HH:MM'"),
        ("Mnd 08:00-18:00", "unknown day 'Mnd'"),
        ("Monday 08:00-18:00", "unknown day 'Monday'"),
        ("Mon, 08:00-18:00", "empty day"),
        ("Mon 18:00-08:00", "end must be after the start"),
        ("Mon 08:00-08:00", "end must be after the start"),
        ("Mon 22:00-02:00", "cannot cross midnight"),
        ("Mon 08:00-25:00", "'25:00' is not a time of day"),
        ("Mon 08:60-09:00", "'08:60' is not a time of day"),
        ("Mon 24:00-24:00", "cannot start at 24:00"),
    ],
)
def test_parse_rejects(spec: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        WorkingHours.parse(spec)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "Europe", "../etc/passwd"])
def test_unknown_timezone(zone: str) -> None:
    with pytest.raises(ValueError, match="time zone"):
        WorkingHours.parse("Mon-Fri 08:00-18:00", zone)
    with pytest.raises(ValueError, match="time zone"):
        parse_timezone(zone)


def test_naive_datetimes_are_refused(office: WorkingHours) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        office.add(datetime(2026, 11, 20, 9, 0), timedelta(hours=1))
    with pytest.raises(ValueError, match="negative"):
        office.add(london(2026, 11, 20, 9, 0), timedelta(hours=-1))


# ---------------------------------------------------------------------- add
def test_friday_evening_plus_four_hours_is_monday_late_morning(office: WorkingHours) -> None:
    due = office.add(london(2026, 11, 20, 17, 55), timedelta(hours=4))
    assert due.tzinfo is UTC
    assert due.astimezone(LONDON) == london(2026, 11, 23, 11, 55)
    assert due.astimezone(LONDON).strftime("%A %H:%M") == "Monday 11:55"


def test_add_within_one_day(office: WorkingHours) -> None:
    assert office.add(london(2026, 11, 17, 9, 0), timedelta(hours=2)) == london(2026, 11, 17, 11)


def test_add_crosses_the_night(office: WorkingHours) -> None:
    # 1h left on Tuesday, 2h more on Wednesday morning.
    assert office.add(london(2026, 11, 17, 17, 0), timedelta(hours=3)) == london(2026, 11, 18, 10)


def test_add_ending_exactly_at_closing_stays_that_day(office: WorkingHours) -> None:
    assert office.add(london(2026, 11, 17, 8, 0), timedelta(hours=10)) == london(2026, 11, 17, 18)


def test_start_outside_hours_waits_for_the_opening(office: WorkingHours) -> None:
    saturday = london(2026, 11, 21, 12, 0)
    assert office.add(saturday, timedelta(minutes=30)) == london(2026, 11, 23, 8, 30)
    before_dawn = london(2026, 11, 18, 3, 0)
    assert office.add(before_dawn, timedelta(hours=1)) == london(2026, 11, 18, 9, 0)
    # Zero duration: the clock "starts" at the next opening.
    assert office.add(saturday, timedelta(0)) == london(2026, 11, 23, 8, 0)


def test_add_accepts_any_input_zone(office: WorkingHours) -> None:
    # 17:55 London is 12:55 in Toronto (EST) on 20 Nov 2026.
    start = datetime(2026, 11, 20, 12, 55, tzinfo=TORONTO)
    assert office.add(start, timedelta(hours=4)) == london(2026, 11, 23, 11, 55)


def test_add_weeks_counts_working_days(office: WorkingHours) -> None:
    # 10 working hours a day: 100h is exactly two working weeks.
    start = london(2026, 11, 16, 8, 0)  # a Monday at opening
    assert office.add(start, timedelta(hours=100)) == london(2026, 11, 27, 18, 0)


def test_add_is_fast_for_long_durations(office: WorkingHours) -> None:
    began = time.perf_counter()
    due = office.add(london(2026, 1, 5, 8, 0), timedelta(hours=10 * 5 * 52))
    assert time.perf_counter() - began < 1.0
    # 52 working weeks on: closing time on the Friday of week 52.
    assert due == london(2027, 1, 1, 18, 0)


def test_multi_segment_spec() -> None:
    hours = WorkingHours.parse("Mon-Fri 08:00-18:00; Sat 09:00-13:00", "Europe/London")
    # Friday 17:00 + 3h: 1h Friday, 2h Saturday morning.
    assert hours.add(london(2026, 11, 20, 17, 0), timedelta(hours=3)) == london(2026, 11, 21, 11)
    # Saturday 12:00 + 2h: 1h Saturday, then Monday 08:00 + 1h.
    assert hours.add(london(2026, 11, 21, 12, 0), timedelta(hours=2)) == london(2026, 11, 23, 9)


def test_split_day_skips_the_lunch_break() -> None:
    hours = WorkingHours.parse("Mon-Fri 08:00-12:00, Mon-Fri 13:00-17:00", "UTC")
    start = datetime(2026, 11, 16, 11, 0, tzinfo=UTC)
    assert hours.add(start, timedelta(hours=2)) == datetime(2026, 11, 16, 14, 0, tzinfo=UTC)


def test_midnight_split_window_runs_through() -> None:
    nights = WorkingHours.parse("Fri 22:00-24:00; Sat 00:00-06:00", "UTC")
    start = datetime(2026, 11, 20, 23, 0, tzinfo=UTC)
    assert nights.add(start, timedelta(hours=3)) == datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


# ---------------------------------------------------------------------- DST
def test_autumn_change_moves_utc_opening(office: WorkingHours) -> None:
    # Clocks go back on Sunday 25 Oct 2026. Friday 17:00 BST + 2h: 1h Friday, then Monday
    # 08:00 *GMT* + 1h. A fixed offset would wrongly give 08:00 UTC.
    due = office.add(london(2026, 10, 23, 17, 0), timedelta(hours=2))
    assert due == datetime(2026, 10, 26, 9, 0, tzinfo=UTC)
    assert due.astimezone(LONDON) == london(2026, 10, 26, 9, 0)


def test_spring_change_moves_utc_opening(office: WorkingHours) -> None:
    # Clocks go forward on Sunday 29 Mar 2026: Monday opens at 08:00 BST = 07:00 UTC.
    due = office.add(london(2026, 3, 27, 18, 0), timedelta(hours=1))
    assert due == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)
    assert due.astimezone(LONDON) == london(2026, 3, 30, 9, 0)


def test_a_day_is_25_or_23_hours_long_at_the_changes() -> None:
    always = WorkingHours.parse("Mon-Sun 00:00-24:00", "Europe/London")
    autumn = always.elapsed(london(2026, 10, 25, 0, 0), london(2026, 10, 26, 0, 0))
    spring = always.elapsed(london(2026, 3, 29, 0, 0), london(2026, 3, 30, 0, 0))
    assert autumn == timedelta(hours=25)
    assert spring == timedelta(hours=23)


def test_window_spanning_the_changes() -> None:
    early = WorkingHours.parse("Sun 00:00-04:00", "Europe/London")
    week = timedelta(days=7)
    assert early.elapsed(london(2026, 10, 22), london(2026, 10, 22) + week) == timedelta(hours=5)
    assert early.elapsed(london(2026, 3, 26), london(2026, 3, 26) + week) == timedelta(hours=3)


def test_window_starting_in_the_spring_gap_opens_when_clocks_change() -> None:
    # 01:30 does not exist on 29 Mar 2026 in London; the window opens at the change
    # (01:00 UTC = 02:00 BST) and runs to 03:00 BST.
    gap = WorkingHours.parse("Sun 01:30-03:00", "Europe/London")
    saturday = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    assert gap.next_open(saturday) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert gap.elapsed(saturday, saturday + timedelta(days=2)) == timedelta(hours=1)


def test_dst_week_elapsed_matches_local_working_hours(office: WorkingHours) -> None:
    # The DST week still has 5 x 10 local working hours.
    monday, next_monday = london(2026, 10, 19), london(2026, 10, 26)
    assert office.elapsed(monday, next_monday) == timedelta(hours=50)


# ---------------------------------------------------------------------- elapsed / queries
def test_elapsed_is_zero_when_end_is_not_after_start(office: WorkingHours) -> None:
    t = london(2026, 11, 17, 10, 0)
    assert office.elapsed(t, t) == timedelta(0)
    assert office.elapsed(t, t - timedelta(hours=1)) == timedelta(0)


def test_elapsed_over_a_weekend(office: WorkingHours) -> None:
    friday, monday = london(2026, 11, 20, 17, 0), london(2026, 11, 23, 9, 30)
    assert office.elapsed(friday, monday) == timedelta(hours=2, minutes=30)


@pytest.mark.parametrize(
    "spec", ["Mon-Fri 08:00-18:00", "Mon-Fri 08:00-12:00; Mon-Fri 13:00-17:00; Sat 09:00-11:00"]
)
@pytest.mark.parametrize(
    "start",
    [
        london(2026, 11, 20, 17, 55),  # Friday evening
        london(2026, 11, 21, 10, 0),  # Saturday
        london(2026, 10, 23, 16, 0),  # Friday before the autumn change
        london(2026, 3, 27, 12, 34),  # Friday before the spring change
        london(2026, 3, 29, 1, 30),  # in the spring gap itself
        london(2026, 11, 18, 3, 0),  # before opening
    ],
)
@pytest.mark.parametrize("minutes", [1, 59, 240, 601, 3000, 10_000])
def test_elapsed_inverts_add(spec: str, start: datetime, minutes: int) -> None:
    hours = WorkingHours.parse(spec, "Europe/London")
    duration = timedelta(minutes=minutes)
    due = hours.add(start, duration)
    assert hours.elapsed(start, due) == duration
    assert hours.is_open(due - timedelta(seconds=1))


def test_is_open(office: WorkingHours) -> None:
    assert office.is_open(london(2026, 11, 20, 8, 0))  # opening minute is inside
    assert office.is_open(london(2026, 11, 20, 17, 59))
    assert not office.is_open(london(2026, 11, 20, 18, 0))  # closing minute is outside
    assert not office.is_open(london(2026, 11, 21, 12, 0))  # Saturday
    assert not office.is_open(london(2026, 11, 18, 7, 59))


def test_next_open(office: WorkingHours) -> None:
    inside = london(2026, 11, 18, 10, 15)
    assert office.next_open(inside) == inside
    assert office.next_open(london(2026, 11, 20, 18, 0)) == london(2026, 11, 23, 8, 0)
    assert office.next_open(london(2026, 11, 18, 6, 0)) == london(2026, 11, 18, 8, 0)
    assert office.next_open(london(2026, 11, 18, 6, 0)).tzinfo is UTC
