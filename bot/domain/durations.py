"""Durations as people write them in the catalogue and in commands: "15m", "1h30m", "PT15M".

Two spellings are accepted (letters are case-insensitive, surrounding whitespace ignored):

* compact: whole numbers with a unit, largest unit first, each unit at most once, spaces
  allowed between parts: ``90s``, ``15m``, ``2h``, ``1d``, ``2w``, ``1h30m``, ``1d 2h``.
  Units: ``w`` weeks, ``d`` days, ``h`` hours, ``m`` minutes, ``s`` seconds.
* ISO 8601: ``PT15M``, ``P1D``, ``PT1H30M``, ``P1DT2H``, ``P2W``. Years and months are
  refused because they have no fixed length.

Every duration must be longer than zero: a zero or negative SLA, nudge interval or
retention period is always a configuration mistake here.

A due time (`parse_due`, follow-ups) is either such a duration from now or a date and time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from bot.domain.text import escape

__all__ = ["format_duration", "parse_due", "parse_duration"]

DUE_EXAMPLES = "e.g. 4h, 2d, or 2026-12-01 14:00 (UTC)"

EXAMPLES = "use e.g. 90s, 15m, 2h, 1d or PT15M"

_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}

# Fixed unit order (largest first) keeps "1h30m" readable and makes "30m1h" or "1h1h"
# typos fail loudly instead of being silently summed.
_COMPACT = re.compile(
    r"(?:(?P<w>\d+)\s*w)?\s*"
    r"(?:(?P<d>\d+)\s*d)?\s*"
    r"(?:(?P<h>\d+)\s*h)?\s*"
    r"(?:(?P<m>\d+)\s*m)?\s*"
    r"(?:(?P<s>\d+)\s*s)?",
    re.IGNORECASE,
)
# The lookahead after T makes a bare "PT" (or "P1DT") invalid, as ISO 8601 requires.
_ISO = re.compile(
    r"P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?",
    re.IGNORECASE,
)
_ISO_CALENDAR = re.compile(r"P[^T]*[YM]", re.IGNORECASE)


def parse_duration(text: str) -> timedelta:
    """Parse a compact ("1h30m") or ISO 8601 ("PT1H30M") duration.

    Raises ValueError with a one-line message fit to show to a user, e.g.
    ``'15x' is not a duration; use e.g. 90s, 15m, 2h, 1d or PT15M``.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration; {EXAMPLES}")
    raw = text.strip()
    if not raw:
        raise ValueError(f"a duration is required; {EXAMPLES}")
    if len(raw) > 40:
        # Nobody writes a 40-character duration; refusing early also keeps int() away from
        # absurdly long digit strings.
        raise ValueError(f"{raw[:40]!r}… is not a duration; {EXAMPLES}")
    if raw.startswith("-"):
        raise ValueError(f"{raw!r} is not a duration; it must be longer than zero")
    match = _ISO.fullmatch(raw) if raw[:1] in ("P", "p") else _COMPACT.fullmatch(raw)
    if match is None or not any(match.groupdict().values()):
        if _ISO_CALENDAR.match(raw):
            raise ValueError(
                f"{raw!r} is not a duration; years and months have no fixed length, "
                "use days instead (e.g. P30D or 30d)"
            )
        raise ValueError(f"{raw!r} is not a duration; {EXAMPLES}")
    seconds = sum(int(v) * _UNIT_SECONDS[u.lower()] for u, v in match.groupdict().items() if v)
    if seconds <= 0:
        raise ValueError(f"{raw!r} is not a duration; it must be longer than zero")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{raw!r} is too long to be a duration") from None


def format_duration(td: timedelta) -> str:
    """Compact human form: "45s", "15m", "1h 30m", "2d 4h".

    Every non-zero unit down to seconds is shown (rounded to the nearest second), so the
    result parses back with `parse_duration` to the same value. Zero is "0s"; negative
    durations get a leading "-".
    """
    micros = td // timedelta(microseconds=1)
    sign = "-" if micros < 0 else ""
    total = (abs(micros) + 500_000) // 1_000_000
    if total == 0:
        return "0s"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    units = ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s"))
    return sign + " ".join(f"{n}{unit}" for n, unit in units if n)


def parse_due(text: str, now: datetime) -> datetime:
    """A due time typed by a person: a duration from now (`4h`, `2d`) or a date and time
    (`2026-12-01 14:00`, UTC unless an offset is given). ValueError saying what is wrong."""
    raw = text.strip()
    try:
        return now + parse_duration(raw)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"'{escape(raw[:40])}' is not a due time; {DUE_EXAMPLES}.") from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if when <= now:
        raise ValueError(f"'{escape(raw[:40])}' is in the past; {DUE_EXAMPLES}.")
    return when
