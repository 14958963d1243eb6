"""The per-hop clock's pure parts: who holds a consult in each state, a hop's clock and
working time, and the timeline's order and durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.hops import (
    Holder,
    Hop,
    HopRole,
    TimelineRow,
    held_by_holder,
    holder_of,
    timeline,
)
from bot.domain.hours import WorkingHours
from bot.domain.lifecycle import Status

T = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)  # a Friday, 16:00 UTC
M = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("status", "assignee", "expected"),
    [
        (Status.OPEN, None, Holder("cardiology", HopRole.QUEUE)),
        # Handed off before anyone acknowledged: still nobody's until acknowledged.
        (Status.OPEN, "UA", Holder("cardiology", HopRole.QUEUE)),
        (Status.ACKNOWLEDGED, "UA", Holder("cardiology", HopRole.CONSULTANT, "UA")),
        (Status.ACKNOWLEDGED, None, Holder("cardiology", HopRole.QUEUE)),
        (Status.WAITING, "UA", Holder("cardiology", HopRole.REQUESTER, "UREQ")),
        (Status.ANSWERED, "UA", None),
        (Status.CLOSED, "UA", None),
        (Status.CANCELLED, None, None),
    ],
)
def test_the_holder_follows_the_status(status: Status, assignee: str | None, expected):
    got = holder_of(status.value, service="cardiology", assignee=assignee, requester="UREQ")
    assert got == expected


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError):
        holder_of("lost", service="cardiology", assignee=None, requester="UREQ")


def test_a_transfer_changes_the_holder_through_its_service():
    before = holder_of("open", service="cardiology", assignee=None, requester="UREQ")
    after = holder_of("open", service="radiology", assignee=None, requester="UREQ")
    assert before != after


def test_a_hop_lasts_clock_time_or_working_time():
    hours = WorkingHours.parse("Mon-Fri 08:00-18:00", "UTC")
    # Friday 16:00 to Monday 10:00: 66 hours on the clock, 2 + 2 working hours.
    hop = Hop("cardiology", HopRole.CONSULTANT, "UA", T, T + timedelta(hours=66))
    assert hop.seconds(T) == 66 * 3600
    assert hop.seconds(T, hours) == 4 * 3600
    running = Hop("cardiology", HopRole.QUEUE, None, T)
    assert running.seconds(T + 5 * M) == 300
    assert running.seconds(T - 5 * M) == 0  # never negative


def test_the_timeline_is_in_time_order_with_the_running_hop_last():
    queue = Hop("cardiology", HopRole.QUEUE, None, T, T + 10 * M)
    first = Hop("cardiology", HopRole.CONSULTANT, "UA", T + 10 * M, T + 60 * M)
    second = Hop("cardiology", HopRole.CONSULTANT, "UB", T + 60 * M)
    rows = timeline([first, queue], second, T + 65 * M)
    assert rows == [
        TimelineRow(queue, 600.0, running=False),
        TimelineRow(first, 3000.0, running=False),
        TimelineRow(second, 300.0, running=True),
    ]
    totals = held_by_holder(rows)
    assert totals[Holder("cardiology", HopRole.CONSULTANT, "UA")] == 3000.0
    assert totals[Holder("cardiology", HopRole.CONSULTANT, "UB")] == 300.0
    assert timeline([], None, T) == []


def test_hops_of_the_same_holder_add_up():
    a = Hop("cardiology", HopRole.CONSULTANT, "UA", T, T + 15 * M)
    wait = Hop("cardiology", HopRole.REQUESTER, "UREQ", T + 15 * M, T + 40 * M)
    b = Hop("cardiology", HopRole.CONSULTANT, "UA", T + 40 * M, T + 50 * M)
    totals = held_by_holder(timeline([a, wait, b], None, T + 50 * M))
    assert totals == {
        Holder("cardiology", HopRole.CONSULTANT, "UA"): 1500.0,
        Holder("cardiology", HopRole.REQUESTER, "UREQ"): 1500.0,
    }
