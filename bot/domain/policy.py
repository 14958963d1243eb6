"""SLA clocks and the escalation ladder, as pure functions of a policy and the time.

Clocks run from creation; routine (or any non-stat) clocks may count only inside working
hours. Need-info pauses the consultant's answer clock. The ladder says whom to nudge next:
on-call (or the assignee once acknowledged), then the backup, then the leads, nudging the
highest level reached every `nudge_every` until someone acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from bot.domain.hours import WorkingHours


class ClockPolicy(Protocol):
    """The parts of an urgency policy the clocks need (see bot.domain.catalogue.UrgencyPolicy)."""

    acknowledge_within: timedelta
    answer_within: timedelta
    nudge_every: timedelta
    escalate_after: int
    hours: WorkingHours | None


def add_time(policy: ClockPolicy, start: datetime, duration: timedelta) -> datetime:
    """`start` plus `duration` of clock time (working time when the policy has hours)."""
    if policy.hours is None:
        return start + duration
    return policy.hours.add(start, duration)


def due_times(policy: ClockPolicy, created_at: datetime) -> tuple[datetime, datetime]:
    """When a consult created at `created_at` must be acknowledged and answered."""
    return (
        add_time(policy, created_at, policy.acknowledge_within),
        add_time(policy, created_at, policy.answer_within),
    )


def due_times_since(
    policy: ClockPolicy, start: datetime, waited: timedelta = timedelta(0)
) -> tuple[datetime, datetime]:
    """`due_times` from `start` (the consult's creation, or its arrival at a service after a
    transfer), with the answer deadline pushed back by `waited` already spent waiting on the
    requester (need-info): the deadlines a new urgency gives a consult under way."""
    acknowledge, answer = due_times(policy, start)
    if waited > timedelta(0):
        answer = add_time(policy, answer, waited)
    return acknowledge, answer


def resume_answer_due(
    policy: ClockPolicy, answer_due: datetime, waiting_since: datetime, now: datetime
) -> datetime:
    """Push the answer deadline back by the time spent waiting on the requester."""
    if policy.hours is None:
        return answer_due + max(now - waiting_since, timedelta(0))
    if answer_due <= waiting_since:
        return now  # it was already overdue when the question went out
    remaining = policy.hours.elapsed(waiting_since, answer_due)
    return policy.hours.add(now, remaining)


class Phase(StrEnum):
    """What a consult is waiting for, which decides whom the ladder starts with (stored in
    `consults.nudge_phase`)."""

    ACKNOWLEDGE = "acknowledge"
    ANSWER = "answer"
    REQUESTER = "requester"


@dataclass(frozen=True)
class Ladder:
    """The people to nudge, level by level: [[on-call or assignee], [backup], [leads…]]."""

    levels: tuple[tuple[str, ...], ...]

    @classmethod
    def build(
        cls,
        *,
        first: str | tuple[str, ...] | None,
        backup: str | None,
        leads: list[str] | tuple[str, ...],
    ) -> Ladder:
        """`first` may name several people (overlapping on-call shifts: all are nudged)."""
        levels: list[tuple[str, ...]] = []
        firsts = first if isinstance(first, tuple) else (first,)
        for people in (firsts, (backup,), tuple(leads)):
            level = tuple(p for p in people if p)
            seen = {p for lvl in levels for p in lvl}
            level = tuple(p for p in level if p not in seen)
            if level:
                levels.append(level)
        return cls(levels=tuple(levels))

    @property
    def top(self) -> int:
        return max(len(self.levels) - 1, 0)


@dataclass(frozen=True)
class NudgeState:
    """The escalation state kept in the consult row."""

    level: int
    nudges_at_level: int


@dataclass(frozen=True)
class NudgePlan:
    """One nudge: whom to mention, whether it escalated, and when the next one is due."""

    level: int
    nudges_at_level: int
    targets: tuple[str, ...]
    escalated: bool
    next_nudge_at: datetime


def plan_nudge(
    *, ladder: Ladder, state: NudgeState, escalate_after: int, nudge_every: timedelta, now: datetime
) -> NudgePlan:
    """Decide the nudge to send now.

    After `escalate_after` nudges at one level the next nudge goes one level up; at the top
    it keeps nudging the highest level reached. The next nudge is due `nudge_every` from
    *now*, so after downtime an overdue consult gets one nudge, not a burst of missed ones.
    """
    level, count = state.level, state.nudges_at_level
    escalated = False
    if count >= escalate_after and level < ladder.top:
        level, count, escalated = level + 1, 0, True
    level = min(level, ladder.top)
    targets = ladder.levels[level] if ladder.levels else ()
    return NudgePlan(
        level=level,
        nudges_at_level=count + 1,
        targets=targets,
        escalated=escalated,
        next_nudge_at=now + nudge_every,
    )
