"""The demo's consult catalogue: the shipped template (``catalogue.toml.in``) filled in with
the cast's Slack ids and the day's compressed clocks.

Every duration is in *demo seconds* at --speed 1 (one second = five minutes): stat
15m/1h/10m, urgent 1h/4h/30m, routine 4h/24h/2h, as in the example catalogue, but escalating
after one nudge so the whole ladder fits in the demo.
"""

from __future__ import annotations

from importlib.resources import files

from bot.dev.demo.cast import CAST, REYES

__all__ = ["DEMO_CATALOGUE", "MINUTES_PER_SECOND", "demo_catalogue", "demo_seconds"]

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
}


def demo_seconds(speed: float) -> dict[str, int]:
    """The catalogue's durations at `speed`: whole seconds (the catalogue's unit), >= 1."""
    return {k: max(1, round(v / speed)) for k, v in _BASE_SECONDS.items()}


def demo_catalogue(speed: float = 1.0) -> str:
    """The demo's catalogue TOML for `speed`."""
    ids = {p.name.split()[-1].lower(): p.id for p in CAST}
    return DEMO_CATALOGUE.format(lead=REYES.id, **demo_seconds(speed), **ids)
