"""Working-hours clocks end to end: a routine consult's clock runs only in working hours."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.dev.fakeslack import FakeSlack
from bot.domain.catalogue_load import parse_catalogue
from bot.domain.clock import FakeClock
from tests.harness import REQUESTER, TEST_CATALOGUE, Bot, start_bot

TORONTO = ZoneInfo("America/Toronto")
HOURS_CATALOGUE = TEST_CATALOGUE.replace(
    '[urgency.routine]\nacknowledge_within = "4h"',
    '[urgency.routine]\nhours = "Mon-Fri 08:00-18:00"\ntimezone = "America/Toronto"\n'
    'acknowledge_within = "4h"',
)


@pytest.fixture
def hours_bot(db_url: str, slack: FakeSlack) -> Iterator[Bot]:
    clock = FakeClock(datetime(2026, 11, 20, 17, 55, tzinfo=TORONTO))  # a Friday
    running = start_bot(
        db_url, slack, catalogue=parse_catalogue(HOURS_CATALOGUE, "hours.toml"), clock=clock
    )
    yield running
    running.stop()


def test_routine_consult_on_friday_evening_is_due_monday(hours_bot: Bot):
    ref = hours_bot.open("cards routine MRN 5: outpatient echo review?")
    consult = hours_bot.consult(ref)
    assert consult.acknowledge_due_at.astimezone(TORONTO) == datetime(
        2026, 11, 23, 11, 55, tzinfo=TORONTO
    )


def test_no_nudges_over_the_weekend_then_one_on_monday(hours_bot: Bot):
    ref = hours_bot.open("cards routine MRN 5: outpatient echo review?")
    hours_bot.clock.set(datetime(2026, 11, 22, 12, 0, tzinfo=TORONTO))  # Sunday noon
    assert hours_bot.sweep().nudged == []
    hours_bot.clock.set(datetime(2026, 11, 23, 11, 56, tzinfo=TORONTO))  # Monday
    assert hours_bot.sweep().nudged == [ref]


def test_stat_clock_ignores_working_hours(hours_bot: Bot):
    ref = hours_bot.open("cards stat MRN 6: STEMI?")
    consult = hours_bot.consult(ref)
    assert (consult.acknowledge_due_at - consult.created_at).total_seconds() == 15 * 60
    assert REQUESTER == consult.requester


def test_overdue_routine_consult_is_not_nudged_at_night(hours_bot: Bot):
    ref = hours_bot.open("cards routine MRN 5: outpatient echo review?")
    hours_bot.clock.set(datetime(2026, 11, 23, 11, 56, tzinfo=TORONTO))  # Monday, overdue
    assert hours_bot.sweep().nudged == [ref]
    hours_bot.clock.set(datetime(2026, 11, 23, 23, 0, tzinfo=TORONTO))  # Monday night
    assert hours_bot.sweep().nudged == []
    assert hours_bot.consult(ref).next_nudge_at.astimezone(TORONTO) == datetime(
        2026, 11, 24, 8, 0, tzinfo=TORONTO
    )
    hours_bot.clock.set(datetime(2026, 11, 24, 8, 1, tzinfo=TORONTO))
    assert hours_bot.sweep().nudged == [ref]
