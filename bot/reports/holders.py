"""Time held, hop by hop, in the reports: who held each service's consults and for how long
(`holders`: consultants, and requesters while a consult waited on them) and how long
consults sat in each service's queue with nobody owning them (`queue_seconds`).

The period's hops are those that *ended* in ``[since, until)`` (a hop still running is
counted once it ends), whatever the consult's creation date. A hop's time is working time
when its service has working hours for the consult's urgency (`bot.domain.hours`, as the
SLA clocks count it), else clock time like the core figures (`epoch_seconds`).

Working time cannot be computed in SQL. Both databases send the hops' times per (service,
role, holder, urgency) and numpy computes their seconds (`bot.reports.holders_pg`: binary
values; `bot.reports.holders_sqlite`: text; working time by `bot.reports.worktime`);
PostgreSQL reads the stored per-day seconds (`bot.reports.hop_days`) when the period has
whole days stored. The figures are identical, bit for bit, on both databases and every
path, and to each hop's seconds computed alone (``WorkingHours.elapsed``, else clock time:
what `tests/data/test_holders_vectorised.py` compares with). Percentiles
interpolate like ``percentile_cont`` (`bot.reports.percentiles`, `bot.reports.vectors`);
totals are exactly rounded sums (`math.fsum`) of the pooled values, so the order rows or
parts arrive in cannot change them. Only service keys, roles, Slack user ids and times are
read: never a patient or any free text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from bot.domain.catalogue import Catalogue
from bot.domain.hops import HopRole
from bot.reports.holders_pg import hours_of, pooled_seconds
from bot.reports.holders_sqlite import pooled_seconds_sqlite
from bot.reports.hop_days import cached_pooled
from bot.reports.vectors import percentiles

# The order holders are listed in within a service.
_ROLE_ORDER = {HopRole.CONSULTANT.value: 0, HopRole.REQUESTER.value: 1}


@dataclass(frozen=True)
class Held:
    """Seconds held over a group's hops: the total, the median and p90 of one hop."""

    total: float
    median: float | None
    p90: float | None

    @classmethod
    def of(cls, seconds: np.ndarray) -> Held:
        """The figures of these hops' seconds (float64, sorted in place)."""
        return cls(math.fsum(seconds.tolist()), *percentiles(seconds))

    def as_dict(self) -> dict[str, Any]:
        """``{"total", "median", "p90"}``."""
        return {"total": self.total, "median": self.median, "p90": self.p90}


@dataclass(frozen=True)
class HolderFigures:
    """One person's time holding one service's consults in one role."""

    service: str
    user: str
    role: str  # "consultant" | "requester"
    hops: int
    held_seconds: Held

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape: ``{service, user, role, hops, held_seconds: {total, median, p90}}``."""
        return {
            "service": self.service,
            "user": self.user,
            "role": self.role,
            "hops": self.hops,
            "held_seconds": self.held_seconds.as_dict(),
        }


@dataclass(frozen=True)
class QueueFigures:
    """One service's queue hops (nobody owned the consult): how many, and their time."""

    service: str
    hops: int
    held_seconds: Held

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape under each service: ``queue_seconds: {median, p90}``."""
        return {"median": self.held_seconds.median, "p90": self.held_seconds.p90}


@dataclass(frozen=True)
class HolderReport:
    """The period's time held: per holder (service order, consultants then requesters,
    then user id) and per service's queue (every service asked for, zeros when none)."""

    holders: list[HolderFigures]
    queues: dict[str, QueueFigures]


def holder_report(
    session: Session,
    *,
    catalogue: Catalogue,
    services: Sequence[str],
    since: datetime,
    until: datetime,
) -> HolderReport:
    """Time held in the hops of `services` that ended in ``[since, until)``."""
    hours = hours_of(catalogue)
    if session.get_bind().dialect.name == "sqlite":
        pooled = pooled_seconds_sqlite(session, services, since, until, hours)
    else:
        stored = cached_pooled(session, catalogue, services, since, until)
        pooled = (
            stored if stored is not None else pooled_seconds(session, services, since, until, hours)
        )
    queues: dict[str, list[np.ndarray]] = {key: [] for key in services}
    held: dict[tuple[str, str, str], np.ndarray] = {}
    for (service, role, user), parts in pooled.items():
        if role == HopRole.QUEUE:
            queues.setdefault(service, []).extend(parts)
        elif user:
            held[(service, role, user)] = np.concatenate(parts)
    queue = {key: np.concatenate(parts or [np.empty(0)]) for key, parts in queues.items()}
    return _report(services, queue, held)


def _report(
    services: Sequence[str],
    queue: dict[str, np.ndarray],
    held: dict[tuple[str, str, str], np.ndarray],
) -> HolderReport:
    """The report of the pooled seconds: holders in service order, consultants then
    requesters, then user id."""
    order = {key: i for i, key in enumerate(services)}
    keys = sorted(held, key=lambda k: (order.get(k[0], len(order)), _ROLE_ORDER.get(k[1], 9), k[2]))
    return HolderReport(
        holders=[
            HolderFigures(
                service,
                user,
                role,
                len(held[(service, role, user)]),
                Held.of(held[(service, role, user)]),
            )
            for service, role, user in keys
        ],  # fmt: skip
        queues={key: QueueFigures(key, len(s), Held.of(s)) for key, s in queue.items()},
    )
