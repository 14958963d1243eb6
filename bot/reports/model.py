"""The typed report: period counts and times of one group while aggregating (`Counts`,
`Group`), the figures shown for a group (`Figures`), a service's figures with its breakdowns
(`ServiceReport`) and the whole `Report`, whose `as_dict()` is the documented JSON shape of
`python -m bot report --format json`. Also the UTC helpers the report's times go through."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

GroupKey = tuple[str, str, str]  # (service, "" | "u" | "c", "" | urgency | user)
Pair = tuple[float | None, float | None]  # (median, 90th percentile)
NO_TIMES: Pair = (None, None)


@dataclass(slots=True)
class Counts:
    """The period counts of one group (field order: the SQL aggregates' order)."""

    consults: int = 0
    acknowledged: int = 0
    answered: int = 0
    closed: int = 0
    cancelled: int = 0
    escalated: int = 0
    handed_off: int = 0
    reopened: int = 0
    waiting_total: int = 0  # seconds waited on requesters
    waiting_n: int = 0  # consults that waited on their requester
    sla_n: int = 0  # consults whose answer SLA is decided
    sla_ok: int = 0  # ... answered within it
    ack_n: int = 0  # consults whose acknowledgement SLA is decided
    ack_ok: int = 0  # ... acknowledged within it
    fb_n: int = 0  # answers rated
    fb_helpful: int = 0  # ... rated helpful

    def add(self, other: Counts) -> None:
        """Add `other`'s counts to these."""
        for f in COUNT_FIELDS:
            setattr(self, f, getattr(self, f) + getattr(other, f))


COUNT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Counts))


@dataclass
class Group(Counts):
    """Aggregated period figures of one group, before formatting: counts and the
    (median, p90) of each time, in seconds."""

    tta: Pair = NO_TIMES  # time to acknowledge
    ttfr: Pair = NO_TIMES  # time to first response
    ttans: Pair = NO_TIMES  # time to answer, waiting on the requester left out
    waiting: Pair = NO_TIMES  # time waited on the requester, of consults that waited

    @classmethod
    def of(cls, counts: Counts, times: dict[str, Pair]) -> Group:
        """A group from its counts and its percentiles by field name (missing: none)."""
        values = {f: getattr(counts, f) for f in COUNT_FIELDS}
        return cls(**values, **{f: times.get(f, NO_TIMES) for f in TIME_FIELDS})


TIME_FIELDS: tuple[str, ...] = ("tta", "ttfr", "ttans", "waiting")


@dataclass(frozen=True)
class Times:
    """Median and 90th percentile of a time, in seconds (None: no consults)."""

    median: float | None
    p90: float | None


@dataclass(frozen=True)
class Waiting:
    """Time waited on requesters (need-info), reported apart from the answer time."""

    total: int
    median: float | None
    p90: float | None
    consults: int


@dataclass(frozen=True)
class Feedback:
    """Answer ratings: how many, how many helpful, and that share (None: no ratings)."""

    count: int
    helpful: int
    helpful_share: float | None


@dataclass(frozen=True)
class Figures:
    """The figures of one group as reported (field order: the JSON's key order)."""

    consults: int
    acknowledged: int
    answered: int
    closed: int
    cancelled: int
    open_now: int
    open_overdue: int
    escalated: int
    handed_off: int
    reopened: int
    time_to_acknowledge: Times
    time_to_first_response: Times
    time_to_answer: Times
    waiting_on_requester: Waiting
    within_sla: float | None
    ack_within_sla: float | None
    feedback: Feedback

    @classmethod
    def of(cls, g: Group, open_now: int, open_overdue: int) -> Figures:
        """The reported figures of an aggregated group and its open counts now."""
        return cls(
            consults=g.consults,
            acknowledged=g.acknowledged,
            answered=g.answered,
            closed=g.closed,
            cancelled=g.cancelled,
            open_now=open_now,
            open_overdue=open_overdue,
            escalated=g.escalated,
            handed_off=g.handed_off,
            reopened=g.reopened,
            time_to_acknowledge=Times(*g.tta),
            time_to_first_response=Times(*g.ttfr),
            time_to_answer=Times(*g.ttans),
            waiting_on_requester=Waiting(g.waiting_total, *g.waiting, g.waiting_n),
            within_sla=share(g.sla_ok, g.sla_n),
            ack_within_sla=share(g.ack_ok, g.ack_n),
            feedback=Feedback(g.fb_n, g.fb_helpful, share(g.fb_helpful, g.fb_n)),
        )

    def as_dict(self) -> dict[str, Any]:
        """The figures as the report's JSON has them."""
        return asdict(self)


@dataclass(frozen=True)
class ServiceReport:
    """One service's figures, and the same per urgency and per consultant."""

    service: str
    figures: Figures
    by_urgency: dict[str, Figures] = field(default_factory=dict)
    by_consultant: dict[str, Figures] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """``{"service", <figures>..., "by_urgency", "by_consultant"}``, as in the JSON."""
        return {
            "service": self.service,
            **self.figures.as_dict(),
            "by_urgency": {u: f.as_dict() for u, f in self.by_urgency.items()},
            "by_consultant": {u: f.as_dict() for u, f in self.by_consultant.items()},
        }


@dataclass(frozen=True)
class Report:
    """Figures for consults created in ``[since, until)``, per service."""

    since: datetime
    until: datetime
    services: list[ServiceReport]
    # Critical results sent in the period, per service (`bot.reports.critical.CriticalFigures`).
    critical: list[Any] = field(default_factory=list)
    # Follow-ups per service of the linked consult, then "none"
    # (`bot.reports.followups.FollowupFigures`).
    followups: list[Any] = field(default_factory=list)

    # Time held in the hops that ended in the period (`bot.reports.holders.HolderReport`):
    # `holders` at the top level, each service's `queue_seconds` in its entry.
    held: Any = None
    # Transfers made in the period, per service (`bot.reports.transfers.TransferFigures`).
    transfers: list[Any] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """``{"since", "until", "services": [...], "critical": [...], "followups": [...],
        "holders": [...], "transfers": [...]}``:
        times as `iso_z`; each service also has ``queue_seconds: {median, p90}``."""
        queues = self.held.queues if self.held is not None else {}
        return {
            "since": iso_z(self.since),
            "until": iso_z(self.until),
            "services": [
                s.as_dict()
                | ({"queue_seconds": queues[s.service].as_dict()} if s.service in queues else {})
                for s in self.services
            ],  # fmt: skip
            "critical": [c.as_dict() for c in self.critical],
            "followups": [f.as_dict() for f in self.followups],
            "holders": [h.as_dict() for h in self.held.holders] if self.held else [],
            "transfers": [t.as_dict() for t in self.transfers],
        }


def share(part: int, whole: int) -> float | None:
    """`part` / `whole`, None when `whole` is 0."""
    return part / whole if whole else None


def as_utc(when: datetime) -> datetime:
    """`when` in UTC; a naive time is taken to be UTC already."""
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def iso_z(when: datetime) -> str:
    """'2026-10-24T00:00:00Z' (UTC, whole seconds; fractions shown only when present)."""
    when = as_utc(when)
    if when.microsecond:
        return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
