"""Working hours: SLA clocks that only run while a service is staffed.

A `WorkingHours` is a weekly pattern of opening windows in one IANA time zone. Windows are
laid out in local wall-clock time for each calendar day and only then converted to UTC, so
daylight-saving changes move the UTC instants, not the local opening times.

Spec grammar (day names are 3-letter English, case-insensitive; spaces are optional
around ``-`` and ``,``)::

    spec     := segment ( ";" segment )*        -- "," also separates segments, but only
                                                   right after a time range (see below)
    segment  := days WS time "-" time
    days     := dayitem ( "," dayitem )*
    dayitem  := day | day "-" day               -- ranges may wrap: "Sat-Mon"
    day      := Mon | Tue | Wed | Thu | Fri | Sat | Sun
    time     := H:MM | HH:MM                    -- 00:00..23:59; the end may also be 24:00

Examples: ``"Mon-Fri 08:00-18:00"``, ``"Mon-Fri 08:00-18:00; Sat 09:00-13:00"``,
``"Mon,Wed 07:30-12:00, Tue 13:00-17:00"``, ``"Sat-Sun 00:00-24:00"``.

A comma is a day separator when it follows a day name and a segment separator when it
follows a time, so the grammar is unambiguous. Windows cannot cross midnight (write
``"Mon 22:00-24:00; Tue 00:00-06:00"``, which behaves as one continuous window).
Overlapping or touching windows on the same day are merged.

Around DST changes: a local time that is ambiguous (clocks go back) means its first
occurrence; a local time that does not exist (clocks go forward) means the instant the
clocks change.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DAY_NAMES", "WorkingHours", "parse_timezone"]

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_INDEX = {name.lower(): i for i, name in enumerate(DAY_NAMES)}
_DAY_LIST = "Mon, Tue, Wed, Thu, Fri, Sat or Sun"
_EXAMPLE = "e.g. 'Mon-Fri 08:00-18:00; Sat 09:00-13:00'"
_MINUTES_PER_DAY = 24 * 60

_SEGMENT = re.compile(
    r"(?P<days>[A-Za-z][A-Za-z\s,\-]*?)\s*(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})"
)
# A comma right after a digit ends a time range, so it separates segments; a comma after
# a letter separates days inside one segment.
_SEGMENT_COMMA = re.compile(r"(?<=\d)\s*,")

Window = tuple[int, int]  # minutes since local midnight, [start, end)


def parse_timezone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name such as "Europe/London"; ValueError if unknown."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a time zone is required, e.g. 'Europe/London' or 'UTC'")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a directory such as "Europe" is not a zone.
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/London' or 'UTC'"
        ) from None


class WorkingHours:
    """A weekly pattern of working windows in one time zone (build with `parse`).

    All methods take aware datetimes in any zone; instants returned are aware UTC.
    Windows are half-open: open at the start minute, closed at the end minute.
    """

    __slots__ = ("_timezone", "_tz", "_week")

    def __init__(self, week: Sequence[Sequence[Window]], timezone: str = "UTC") -> None:
        """`week[0]` (Monday) .. `week[6]` (Sunday): (start, end) minutes since midnight."""
        if len(week) != 7:
            raise ValueError("working hours need one list of windows per weekday")
        self._tz = parse_timezone(timezone)
        self._timezone = timezone.strip()
        self._week = tuple(_merge(day) for day in week)
        if not any(self._week):
            raise ValueError(f"working hours have no working time at all; {_EXAMPLE}")

    @classmethod
    def parse(cls, spec: str, timezone: str = "UTC") -> WorkingHours:
        """Parse a spec such as "Mon-Fri 08:00-18:00; Sat 09:00-13:00" (grammar: module doc).

        Raises ValueError naming the offending part for a bad spec or unknown time zone.
        """
        parse_timezone(timezone)  # report a bad zone before any spec problem
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"working hours are empty; {_EXAMPLE}")
        week: list[list[Window]] = [[] for _ in DAY_NAMES]
        for piece in spec.split(";"):
            for segment in _SEGMENT_COMMA.split(piece):
                segment = segment.strip()
                if not segment:
                    continue  # tolerate a trailing or doubled separator
                days, window = _parse_segment(segment)
                for day in days:
                    week[day].append(window)
        return cls(week, timezone)

    # ------------------------------------------------------------------ properties
    @property
    def timezone(self) -> str:
        """The IANA name of the zone the windows are laid out in."""
        return self._timezone

    @property
    def tzinfo(self) -> tzinfo:
        """The zone the windows are laid out in."""
        return self._tz

    @property
    def week(self) -> tuple[tuple[Window, ...], ...]:
        """Merged windows per weekday (Monday first), as minutes since local midnight."""
        return self._week

    # ------------------------------------------------------------------ queries
    def is_open(self, at: datetime) -> bool:
        """Whether `at` falls inside a working window."""
        _require_aware(at, "at")
        # Windows come in time order and all end after `at`, so the first one decides.
        start, _end = next(self._windows(at))
        return start <= at

    def next_open(self, at: datetime) -> datetime:
        """`at` (as UTC) if open, else the start of the next working window."""
        _require_aware(at, "at")
        start, _end = next(self._windows(at))
        return max(start, at.astimezone(UTC))

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant (aware UTC) when `duration` of working time has passed since `start`.

        Outside hours the clock starts at the next opening; a zero duration therefore
        gives `next_open(start)`. Negative durations are refused.
        """
        _require_aware(start, "start")
        if duration < timedelta(0):
            raise ValueError("cannot add a negative working duration")
        remaining = duration
        cursor = start.astimezone(UTC)
        for w_start, w_end in self._windows(cursor):
            # max() with the cursor also absorbs any overlap that DST folding could create
            # between the end of one day's window and the start of the next.
            begin = max(w_start, cursor)
            if w_end <= begin:
                continue
            available = w_end - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
            cursor = w_end
        raise AssertionError("unreachable")  # pragma: no cover - _windows never ends

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Working time between two instants; zero when `end` is not after `start`."""
        _require_aware(start, "start")
        _require_aware(end, "end")
        total = timedelta(0)
        if end <= start:
            return total
        cursor = start.astimezone(UTC)
        stop = end.astimezone(UTC)
        for w_start, w_end in self._windows(cursor):
            if w_start >= stop:
                break
            begin = max(w_start, cursor)
            finish = min(w_end, stop)
            if finish > begin:
                total += finish - begin
                cursor = finish
        return total

    def windows(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The UTC windows `elapsed` walks between two instants: in order, those that end
        after `start` and begin before `end` (they may touch or, around DST, overlap)."""
        _require_aware(start, "start")
        _require_aware(end, "end")
        stop = end.astimezone(UTC)
        for w_start, w_end in self._windows(start.astimezone(UTC)):
            if w_start >= stop:
                return
            yield w_start, w_end

    # ------------------------------------------------------------------ internals
    def _windows(self, after: datetime) -> Iterator[tuple[datetime, datetime]]:
        """UTC windows, in order, that end after `after`; endless (every week has one)."""
        # Start a day early: a window on the previous local day can still be open in UTC
        # terms when the offset changes around midnight.
        day = after.astimezone(self._tz).date() - timedelta(days=1)
        while True:
            for start_min, end_min in self._week[day.weekday()]:
                w_start = _instant(day, start_min, self._tz)
                w_end = _instant(day, end_min, self._tz)
                if w_end > w_start and w_end > after:
                    yield w_start, w_end
            day += timedelta(days=1)

    # ------------------------------------------------------------------ dunder
    def __str__(self) -> str:
        """The normalized spec: days with identical windows grouped, Monday first."""
        groups: dict[tuple[Window, ...], list[int]] = {}
        for index, windows in enumerate(self._week):
            if windows:
                groups.setdefault(windows, []).append(index)
        segments = []
        for windows, days in groups.items():  # dicts keep first-seen (Monday-first) order
            label = _format_days(days)
            segments.extend(f"{label} {_hhmm(s)}-{_hhmm(e)}" for s, e in windows)
        return "; ".join(segments)

    def __repr__(self) -> str:
        return f"WorkingHours({str(self)!r}, timezone={self._timezone!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkingHours):
            return NotImplemented
        return self._week == other._week and self._timezone == other._timezone

    def __hash__(self) -> int:
        return hash((self._week, self._timezone))


# ---------------------------------------------------------------------- parsing helpers
def _parse_segment(segment: str) -> tuple[list[int], Window]:
    match = _SEGMENT.fullmatch(segment)
    if match is None:
        raise ValueError(f"{segment!r} is not '<days> HH:MM-HH:MM'; {_EXAMPLE}")
    days = _parse_days(match["days"], segment)
    start = _parse_time(match["start"], segment, is_end=False)
    end = _parse_time(match["end"], segment, is_end=True)
    if end <= start:
        raise ValueError(
            f"{segment!r}: the end must be after the start; windows cannot cross midnight, "
            "split them (e.g. 'Mon 22:00-24:00; Tue 00:00-06:00')"
        )
    return days, (start, end)


def _parse_days(text: str, segment: str) -> list[int]:
    days: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"{segment!r}: empty day in the day list")
        first, dash, last = (part.strip() for part in item.partition("-"))
        a = _day(first, segment)
        b = _day(last, segment) if dash else a
        # Weeks are cyclic, so "Sat-Mon" means Sat, Sun, Mon.
        days.extend((a + i) % 7 for i in range((b - a) % 7 + 1))
    return days


def _day(name: str, segment: str) -> int:
    try:
        return _DAY_INDEX[name.lower()]
    except KeyError:
        raise ValueError(f"{segment!r}: unknown day {name!r}; use {_DAY_LIST}") from None


def _parse_time(text: str, segment: str, *, is_end: bool) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    minute_of_day = hours * 60 + minutes
    if minutes > 59 or hours > 24 or (minute_of_day > _MINUTES_PER_DAY):
        raise ValueError(f"{segment!r}: {text!r} is not a time of day (00:00 to 24:00)")
    if minute_of_day == _MINUTES_PER_DAY and not is_end:
        raise ValueError(f"{segment!r}: a window cannot start at 24:00")
    return minute_of_day


def _merge(windows: Sequence[Window]) -> tuple[Window, ...]:
    merged: list[Window] = []
    for start, end in sorted(windows):
        if not 0 <= start < end <= _MINUTES_PER_DAY:
            raise ValueError(f"bad working window {start}-{end} (minutes since midnight)")
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def _format_days(days: list[int]) -> str:
    runs: list[list[int]] = []
    for day in days:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        DAY_NAMES[r[0]] if len(r) == 1 else f"{DAY_NAMES[r[0]]}-{DAY_NAMES[r[-1]]}" for r in runs
    )


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# ---------------------------------------------------------------------- time helpers
def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive datetime has no single meaning across zones; guessing would shift SLAs.
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _instant(day: date, minute_of_day: int, tz: ZoneInfo) -> datetime:
    """Local wall time `minute_of_day` on `day` in `tz`, as aware UTC."""
    naive = datetime.combine(day, time()) + timedelta(minutes=minute_of_day)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first  # exists; fold=0 already picked the first of two if ambiguous
    # Inside a spring-forward gap: fold=0 and fold=1 bracket the transition. Clamp to the
    # transition itself so the day's windows stay in order and lose no real time.
    low = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = first
    low, high = min(low, high), max(low, high)
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(tz).replace(tzinfo=None) >= naive:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0) if high.microsecond else high
