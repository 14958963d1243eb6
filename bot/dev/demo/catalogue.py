"""The demo's consult catalogue: the shipped template (``catalogue.toml.in``) filled in with
the cast's Slack ids and the day's compressed clocks.

Every duration is in *demo seconds* at --speed 1 (one second = five minutes): stat
15m/1h/10m, urgent 1h/4h/30m, routine 4h/24h/2h, as in the example catalogue, but escalating
after one nudge so the whole ladder fits in the demo. Critical results: acknowledged within
30m, re-notified every 10m, escalated to the house supervisor after two re-notifications.
Follow-ups: due 1d after the linked consult's answer, nudged every 4h.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib.resources import files

from bot.dev.demo.cast import CAST, CHEN, NOVAK, REYES

__all__ = [
    "DEMO_CATALOGUE",
    "MINUTES_PER_SECOND",
    "demo_catalogue",
    "demo_seconds",
    "radiology_rota",
]

# One real second is this many minutes of the demo's day (at --speed 1).
MINUTES_PER_SECOND = 5

# The template, with ``{placeholders}`` for the durations and the people's ids.
DEMO_CATALOGUE = files("bot.dev.demo").joinpath("catalogue.toml.in").read_text(encoding="utf-8")

_BASE_SECONDS = {
    "sweep": 1,
    "stat_ack": 3,
    "stat_answer": 12,
    "stat_nudge": 2,
    "urgent_ack": 12,
    "urgent_answer": 48,
    "urgent_nudge": 6,
    "routine_ack": 48,
    "routine_answer": 288,
    "routine_nudge": 24,
    "critical_ack": 6,
    "critical_renotify": 2,
    "followup_due": 288,
    "followup_nudge": 48,
}


def demo_seconds(speed: float) -> dict[str, int]:
    """The catalogue's durations at `speed`: whole seconds (the catalogue's unit), >= 1."""
    return {k: max(1, round(v / speed)) for k, v in _BASE_SECONDS.items()}


def demo_catalogue(speed: float = 1.0) -> str:
    """The demo's catalogue TOML for `speed`."""
    ids = {p.name.split()[-1].lower(): p.id for p in CAST}
    return DEMO_CATALOGUE.format(lead=REYES.id, **demo_seconds(speed), **ids)


def radiology_rota(now: datetime, night_from: datetime | None = None) -> str:
    """The radiology rota (ICS): Dr Chen from an hour ago, and from `night_from` (when
    given) Dr Novak on the night shift."""

    def at(when: datetime) -> str:
        return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

    day_end = night_from or now + timedelta(days=1)
    events = [("day", now - timedelta(hours=1), day_end, CHEN.id)]
    if night_from is not None:
        events.append(("night", night_from, night_from + timedelta(days=1), NOVAK.id))
    body = "".join(
        f"BEGIN:VEVENT\nUID:{uid}@demo\nDTSTAMP:{at(now)}\nDTSTART:{at(start)}\n"
        f"DTEND:{at(end)}\nSUMMARY:Radiology on call <@{who}>\nEND:VEVENT\n"
        for uid, start, end, who in events
    )
    return f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//CareLoop demo//EN\n{body}END:VCALENDAR\n"
