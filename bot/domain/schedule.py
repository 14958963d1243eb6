"""On-call schedules from iCalendar (ICS) text: the calendar parsed once (`Calendar`), its
recurrences expanded into `Shift`s (who, from, until) for a window, and the questions asked
of them (who is on call at a moment, when that changes, where nobody is).

Who an event means, in this order: Slack mentions or ids in SUMMARY or DESCRIPTION
(`<@U0123ABC>`, or a bare id of 9 or more characters such as `U0123ABCD`); names of the
catalogue's `[people]` table found in SUMMARY; ATTENDEE e-mails resolved through `emails`
(the flows look them up in Slack once). An event with none of these is kept as a shift of
nobody, with a label for the report, and never guessed.

Pure: no I/O, time passed in. Expansion uses `recurring-ical-events` (RRULE, EXDATE,
RECURRENCE-ID, TZID and DST); an all-day event is the whole day in the calendar's zone
(`X-WR-TIMEZONE`, else UTC).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events

from bot.domain.catalogue import Service

# A mention `<@U…>` or a bare id, in the order they are written.
_SLACK_ID = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>|\b([UW][A-Z0-9]{8,})\b")


class ScheduleError(ValueError):
    """A calendar that cannot be used; the message is one line saying why."""


@dataclass(frozen=True)
class Shift:
    """One expanded event: `people` (Slack ids) on call from `start` until `end` (UTC).

    `unresolved` names what the event said when nobody could be found for it."""

    start: datetime
    end: datetime
    people: tuple[str, ...]
    unresolved: str = ""


@dataclass(frozen=True)
class Calendar:
    """A parsed calendar: the icalendar object and the zone of its all-day events."""

    ical: Any
    zone: timezone | ZoneInfo

    def emails(self) -> set[str]:
        """Every ATTENDEE e-mail (lower case), for the flows to look up once."""
        found: set[str] = set()
        for event in self.ical.walk("VEVENT"):
            found.update(_attendees(event))
        return found


def parse_calendar(text: str, *, now: datetime) -> Calendar:
    """Parse ICS text; ScheduleError (one line) when it is not a usable calendar (its
    events are expanded around `now` once, so a broken rule fails here)."""
    try:
        ical = icalendar.Calendar.from_ical(text)
    except (ValueError, IndexError, KeyError) as exc:
        raise ScheduleError(f"not an iCalendar file ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(ical, icalendar.Calendar) or ical.name != "VCALENDAR":
        raise ScheduleError("not an iCalendar file (no VCALENDAR)")
    if not ical.walk("VEVENT"):
        raise ScheduleError("the calendar has no events")
    zone_name = str(ical.get("X-WR-TIMEZONE", "") or "UTC")
    try:
        zone: timezone | ZoneInfo = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown X-WR-TIMEZONE {zone_name!r}") from None
    calendar = Calendar(ical, zone)
    shifts(calendar, start=now - timedelta(days=1), end=now + timedelta(days=1))
    return calendar


def shifts(
    calendar: Calendar,
    *,
    start: datetime,
    end: datetime,
    people: Mapping[str, str] | None = None,
    emails: Mapping[str, str] | None = None,
) -> list[Shift]:
    """The shifts overlapping [start, end), in order of start."""
    try:
        events = recurring_ical_events.of(calendar.ical).between(start, end)
    except Exception as exc:  # the library raises many kinds for a malformed rule
        raise ScheduleError(
            f"cannot expand the events ({' '.join(str(exc).split())[:120]})"
        ) from None
    found = []
    for event in events:
        begin = _instant(event.get("DTSTART"), calendar.zone)
        if begin is None:
            continue
        finish = _instant(event.get("DTEND"), calendar.zone) or _default_end(event, begin)
        who, label = _who(event, people or {}, emails or {})
        found.append(Shift(begin, finish, who, "" if who else label))
    return sorted(found, key=lambda s: (s.start, s.end, s.people))


def on_call_at(found: Sequence[Shift], at: datetime) -> tuple[str, ...]:
    """Everyone whose shift covers `at` (several when shifts overlap), in shift order."""
    people: list[str] = []
    for shift in found:
        if shift.start <= at < shift.end:
            people += [p for p in shift.people if p not in people]
    return tuple(people)


def changes(found: Sequence[Shift]) -> list[datetime]:
    """Every moment where someone's shift starts or ends, in order."""
    return sorted({s.start for s in found} | {s.end for s in found})


def last_change(found: Sequence[Shift], at: datetime) -> datetime | None:
    """The latest moment ≤ `at` where the people on call changed, or None."""
    before = [
        m for m in changes(found) if m <= at and on_call_at(found, m) != _just_before(found, m)
    ]
    return before[-1] if before else None


def next_change(found: Sequence[Shift], at: datetime) -> datetime | None:
    """The first moment after `at` where the people on call change, or None."""
    for moment in changes(found):
        if moment > at and on_call_at(found, moment) != on_call_at(found, at):
            return moment
    return None


def gaps(found: Sequence[Shift], start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The stretches of [start, end) where nobody is on call."""
    out: list[tuple[datetime, datetime]] = []
    cursor = start
    for shift in sorted((s for s in found if s.people), key=lambda s: s.start):
        if shift.end <= cursor:
            continue
        if shift.start > cursor:
            out.append((cursor, min(shift.start, end)))
        cursor = max(cursor, shift.end)
        if cursor >= end:
            break
    if cursor < end:
        out.append((cursor, end))
    return [(a, b) for a, b in out if a < b]


def _just_before(found: Sequence[Shift], moment: datetime) -> tuple[str, ...]:
    return on_call_at(found, moment - timedelta(microseconds=1))


def _instant(prop: Any, zone: timezone | ZoneInfo) -> datetime | None:
    value = getattr(prop, "dt", None)
    if isinstance(value, datetime):
        local = value if value.tzinfo else value.replace(tzinfo=zone)
        return local.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=zone).astimezone(UTC)
    return None


def _default_end(event: Any, begin: datetime) -> datetime:
    duration = getattr(event.get("DURATION"), "dt", None)
    if isinstance(duration, timedelta):
        return begin + duration
    all_day = not isinstance(getattr(event.get("DTSTART"), "dt", None), datetime)
    return begin + (timedelta(days=1) if all_day else timedelta(0))


def _attendees(event: Any) -> list[str]:
    raw = event.get("ATTENDEE")
    values = raw if isinstance(raw, list) else [raw] if raw else []
    return [str(v).removeprefix("mailto:").removeprefix("MAILTO:").lower() for v in values]


def _who(
    event: Any, people: Mapping[str, str], emails: Mapping[str, str]
) -> tuple[tuple[str, ...], str]:
    """(Slack ids, what the event said) for one event."""
    summary = str(event.get("SUMMARY", ""))
    text = f"{summary}\n{event.get('DESCRIPTION', '')}"
    ids = [m[1] or m[2] for m in _SLACK_ID.finditer(text)]
    if not ids:
        lowered = summary.lower()
        ids = [uid for name, uid in people.items() if name.lower() in lowered]
    if not ids:
        ids = [emails[e] for e in _attendees(event) if e in emails]
    label = summary.strip() or ", ".join(_attendees(event)) or "an event without a name"
    return tuple(dict.fromkeys(ids)), label


@dataclass(frozen=True)
class Standing:
    """A service's on-call as `/consult oncall` shows it: who now, until when, who next,
    and the end of an override in force (None when there is none)."""

    service: Service
    people: tuple[str, ...]
    until: datetime | None = None
    following: tuple[str, ...] = ()
    override_until: datetime | None = None
    overridden: bool = False


_HHMM = re.compile(r"(\d{1,2}):(\d{2})")


def override_end(
    now: datetime, *, hours: timedelta | None, clock_time: str | None, zone: str
) -> datetime | None:
    """When an override asked `for` a duration or `until` HH:MM (next such time in `zone`)
    ends; None when neither was given. ValueError for a time that is not HH:MM."""
    if hours is not None:
        return now + hours
    if clock_time is None:
        return None
    match = _HHMM.fullmatch(clock_time.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(f"{clock_time!r} is not a time; use HH:MM, e.g. 18:00")
    local = now.astimezone(ZoneInfo(zone))
    end = local.replace(hour=int(match[1]), minute=int(match[2]), second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)
    return end.astimezone(UTC)
