"""Who holds a consult, and for how long: the per-hop clock, pure.

A consult's life is a line of *hops*, each an interval with one holder:

* status ``open`` → the service queue (role ``queue``, no user): nobody owns it yet;
* ``acknowledged`` → the consultant who owns it (role ``consultant``, user the assignee;
  no assignee: the queue);
* ``waiting`` (need info) → the requester (role ``requester``, user the requester);
* ``answered``, ``closed``, ``cancelled`` → nobody: no hop runs.

The service is part of the holder, so a transfer to another service ends a hop too.
`holder_of` derives the holder from a consult's state; `bot.flows.hops.settle` compares it
with the holder stored on the row and, when they differ, stores the finished hop.
`timeline` turns the stored hops (and the running one) into rows with durations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bot.domain.hours import WorkingHours
from bot.domain.lifecycle import Status


class HopRole(StrEnum):
    """Who a hop's holder is to the consult."""

    QUEUE = "queue"  # the service's queue: nobody owns it yet
    CONSULTANT = "consultant"
    REQUESTER = "requester"  # need-info: the consult waits on its requester


# Stored on the consult row when no hop runs (answered, closed, cancelled).
NOBODY = "none"


@dataclass(frozen=True)
class Holder:
    """Who holds a consult now: a service's queue, one of its consultants, or its requester."""

    service: str
    role: HopRole
    user: str | None = None


def holder_of(status: str, *, service: str, assignee: str | None, requester: str) -> Holder | None:
    """The holder a consult in `status` has (None: nobody, no hop runs)."""
    current = Status(status)
    if current is Status.OPEN:
        return Holder(service, HopRole.QUEUE)
    if current is Status.ACKNOWLEDGED:
        if assignee:
            return Holder(service, HopRole.CONSULTANT, assignee)
        return Holder(service, HopRole.QUEUE)
    if current is Status.WAITING:
        return Holder(service, HopRole.REQUESTER, requester)
    return None


@dataclass(frozen=True)
class Hop:
    """One interval of a consult's life with one holder; `ended_at` None: it still runs."""

    service: str
    role: HopRole
    user: str | None
    started_at: datetime
    ended_at: datetime | None = None

    @property
    def holder(self) -> Holder:
        """Who held the consult during this hop."""
        return Holder(self.service, self.role, self.user)

    def seconds(self, now: datetime, hours: WorkingHours | None = None) -> float:
        """How long the hop lasted (until `now` while it runs); working time only when
        `hours` is given."""
        end = self.ended_at or now
        if hours is not None:
            return hours.elapsed(self.started_at, end).total_seconds()
        return max((end - self.started_at).total_seconds(), 0.0)


@dataclass(frozen=True)
class TimelineRow:
    """One hop as the consult's timeline shows it."""

    hop: Hop
    seconds: float
    running: bool


@dataclass(frozen=True)
class TimelineEvent:
    """A step of a consult's timeline from its audit trail: a nudge, an escalation, a
    reminder to the requester; `targets` are whom it went to (Slack user ids)."""

    at: datetime
    action: str
    targets: tuple[str, ...] = ()


def timeline(hops: Sequence[Hop], running: Hop | None, now: datetime) -> list[TimelineRow]:
    """The consult's hops in time order (the running one last), each with its duration
    (clock time; the running hop's until `now`)."""
    done = sorted(hops, key=lambda h: (h.started_at, h.ended_at or now))
    rows = [TimelineRow(h, h.seconds(now), running=False) for h in done]
    if running is not None:
        rows.append(TimelineRow(running, running.seconds(now), running=True))
    return rows


def held_by_holder(rows: Sequence[TimelineRow]) -> dict[Holder, float]:
    """Total seconds per holder over a timeline (first holder first)."""
    totals: dict[Holder, float] = {}
    for row in rows:
        totals[row.hop.holder] = totals.get(row.hop.holder, 0.0) + row.seconds
    return totals
