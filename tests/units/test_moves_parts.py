"""The pure parts of transfer and urgency change: their transitions and who may do them,
the parsing of `/consult transfer` and `/consult urgency`, and the deadlines a new urgency
gives a consult under way (working hours, need-info waiting added back)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.domain.catalogue_load import parse_catalogue
from bot.domain.lifecycle import Action, Refused, Role, Status, check_allowed, next_status
from bot.domain.parsing import parse
from bot.domain.policy import due_times_since
from tests.harness import TEST_CATALOGUE

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TORONTO = ZoneInfo("America/Toronto")


@pytest.mark.parametrize("status", [Status.OPEN, Status.ACKNOWLEDGED, Status.WAITING])
def test_a_transfer_reopens_and_an_urgency_change_keeps_the_status(status):
    assert next_status("RAD-1", status, Action.TRANSFER).after is Status.OPEN
    assert next_status("RAD-1", status, Action.URGENCY).after is status


@pytest.mark.parametrize("status", [Status.ANSWERED, Status.CLOSED, Status.CANCELLED])
def test_neither_once_the_consult_is_answered_or_done(status):
    with pytest.raises(Refused, match="cannot be transferred"):
        next_status("RAD-1", status, Action.TRANSFER)
    with pytest.raises(Refused, match="cannot be given another urgency"):
        next_status("RAD-1", status, Action.URGENCY)


def test_who_may_transfer_and_change_the_urgency():
    check_allowed("RAD-1", Action.TRANSFER, {Role.CONSULTANT})
    with pytest.raises(Refused, match="You requested RAD-1, so you cannot transfer it."):
        check_allowed("RAD-1", Action.TRANSFER, {Role.REQUESTER})
    for role in (Role.REQUESTER, Role.OWNER, Role.LEAD):
        check_allowed("RAD-1", Action.URGENCY, {role})
    with pytest.raises(Refused) as refused:
        check_allowed("RAD-1", Action.URGENCY, {Role.CONSULTANT})
    assert str(refused.value) == (
        "Only the service's leads or the consultant who owns it or the requester can change "
        "the urgency of RAD-1."
    )


def test_transfer_and_urgency_commands_parse_the_word_and_the_reason():
    moved = parse("transfer rad-42 Cards  echo question, not imaging")
    assert (moved.ref, moved.service, moved.text) == (
        "RAD-42",
        "Cards",
        "echo question, not imaging",
    )
    urgent = parse("URGENCY RAD-42 STAT new weakness")
    assert (urgent.ref, urgent.urgency, urgent.text) == ("RAD-42", "stat", "new weakness")
    assert "say why" in (parse("transfer RAD-42 cards").error or "")
    assert "say why" in (parse("urgency RAD-42").error or "")
    assert "not a consult reference" in (parse("transfer cards RAD-42 why").error or "")


def test_new_urgency_deadlines_count_from_the_start_with_waiting_added_back():
    catalogue = parse_catalogue(TEST_CATALOGUE, "test.toml")
    stat = catalogue.policy("cardiology", "stat")
    ack, answer = due_times_since(stat, NOW, timedelta(minutes=30))
    assert (ack, answer) == (NOW + timedelta(minutes=15), NOW + timedelta(hours=1, minutes=30))
    assert due_times_since(stat, NOW) == (NOW + timedelta(minutes=15), NOW + timedelta(hours=1))


def test_new_urgency_deadlines_follow_working_hours():
    catalogue = parse_catalogue(
        TEST_CATALOGUE.replace(
            '[urgency.routine]\nacknowledge_within = "4h"',
            '[urgency.routine]\nhours = "Mon-Fri 08:00-18:00"\ntimezone = "America/Toronto"\n'
            'acknowledge_within = "4h"',
        ),
        "hours.toml",
    )
    routine = catalogue.policy("cardiology", "routine")
    friday = datetime(2026, 11, 20, 17, 0, tzinfo=TORONTO)
    ack, _ = due_times_since(routine, friday)
    assert ack.astimezone(TORONTO) == datetime(2026, 11, 23, 11, 0, tzinfo=TORONTO)
