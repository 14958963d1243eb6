"""The report's reads that work on every database: the period filter, the count
aggregates both databases' grouped queries use, the row-by-row aggregation in Python (only
the needed columns, never whole ORM objects; the reference the numpy paths are tested
against, and the path of any other database), the open and overdue counts now, and the
references of the consults overdue now.

Only timing and count columns are read: never patient, question, answer or intake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, case, func, or_, select, type_coerce
from sqlalchemy.orm import Session

from bot.domain.lifecycle import OPEN_STATES, Status
from bot.reports.model import Counts, Group, GroupKey
from bot.reports.percentiles import epoch_seconds, median_and_p90
from storage.models import Consult

C = Consult.__table__.c
# `IN (...)` in a stable order: the SQL text is the same in every process.
_OPEN_IN: tuple[Status, ...] = tuple(sorted(OPEN_STATES))


def period_filter(keys: Sequence[str], since: datetime, until: datetime) -> ColumnElement[bool]:
    """Consults of the services `keys` created in ``[since, until)``."""
    # (service, created_at) is indexed: ix_consults_service_created.
    return and_(C.service.in_(list(keys)), C.created_at >= since, C.created_at < until)


def group_keys(service: str, urgency: str, assignee: str | None) -> list[GroupKey]:
    """The report groups a consult counts in: its service, its service and urgency, and
    its service and consultant (when assigned)."""
    keys: list[GroupKey] = [(service, "", ""), (service, "u", urgency)]
    if assignee:
        keys.append((service, "c", assignee))
    return keys


def due_now() -> Any:
    """When an open consult is due: acknowledgement while open, else the answer."""
    return case((C.status == Status.OPEN, C.acknowledge_due_at), else_=C.answer_due_at)


# The counts a group's arrays of times give (`bot.reports.vectors.part`): the grouped
# queries that send those arrays leave them out (`count_columns(now, from_arrays=True)`).
ARRAY_COUNTS = ("consults", "acknowledged", "answered", "waiting_total", "waiting_n")


def count_columns(now: datetime, *, from_arrays: bool = False) -> dict[str, Any]:
    """The period counts of `Counts`, by field name and in its order, as SQL aggregates;
    without `ARRAY_COUNTS` when `from_arrays`.

    Cheap tests first (an AND stops at the first false); within the SLA means decided
    (a time at or before its due time is a time), so the "ok" counts skip that test.
    """
    not_cancelled = C.status != Status.CANCELLED
    sla_base = and_(or_(C.answered_at.is_not(None), C.answer_due_at < now), not_cancelled)
    ack_base = and_(or_(C.acknowledged_at.is_not(None), C.acknowledge_due_at < now), not_cancelled)

    def count_if(cond: Any) -> Any:
        return func.count().filter(cond)

    columns = {
        "consults": func.count(),
        "acknowledged": func.count(C.acknowledged_at),
        "answered": func.count(C.answered_at),
        "closed": count_if(C.status == Status.CLOSED),
        "cancelled": count_if(C.status == Status.CANCELLED),
        "escalated": count_if(C.escalation_count > 0),
        "handed_off": count_if(C.handoff_count > 0),
        "reopened": count_if(C.reopened_count > 0),
        "waiting_total": func.coalesce(
            func.sum(C.waiting_seconds).filter(C.waiting_seconds > 0), 0
        ),
        "waiting_n": count_if(C.waiting_seconds > 0),
        "sla_n": count_if(sla_base),
        "sla_ok": count_if(and_(C.answered_at <= C.answer_due_at, not_cancelled)),
        "ack_n": count_if(ack_base),
        "ack_ok": count_if(and_(C.acknowledged_at <= C.acknowledge_due_at, not_cancelled)),
        "fb_n": func.count(C.feedback_helpful),
        "fb_helpful": count_if(C.feedback_helpful.is_(True)),
    }
    if from_arrays:
        return {k: v for k, v in columns.items() if k not in ARRAY_COUNTS}
    return columns


@dataclass(slots=True)
class _Acc:
    """Accumulator for one group of the row-by-row path."""

    counts: Counts = field(default_factory=Counts)
    tta: list[float] = field(default_factory=list)
    ttfr: list[float] = field(default_factory=list)
    ttans: list[float] = field(default_factory=list)
    waiting: list[float] = field(default_factory=list)

    def merge(self, other: _Acc) -> None:
        self.counts.add(other.counts)
        self.tta += other.tta
        self.ttfr += other.ttfr
        self.ttans += other.ttans
        self.waiting += other.waiting

    def finish(self) -> Group:
        return Group.of(
            self.counts,
            {
                "tta": median_and_p90(self.tta),
                "ttfr": median_and_p90(self.ttfr),
                "ttans": median_and_p90(self.ttans),
                "waiting": median_and_p90(self.waiting),
            },
        )


def _same(value: Any) -> Any:
    return value


def _period_rows(
    keys: Sequence[str], since: datetime, until: datetime, *, raw: bool
) -> Select[Any]:
    """The period's timing columns; times as ISO text when `raw` (SQLite)."""
    times = (
        C.created_at,
        C.acknowledged_at,
        C.first_reply_at,
        C.answered_at,
        C.acknowledge_due_at,
        C.answer_due_at,
    )
    return select(
        C.service,
        C.urgency,
        C.assignee,
        C.status,
        *(type_coerce(t, String) if raw else t for t in times),
        C.waiting_seconds,
        C.escalation_count,
        C.handoff_count,
        C.reopened_count,
        C.feedback_helpful,
    ).where(period_filter(keys, since, until))


def _add_row(acc: _Acc, row: Sequence[Any], now: datetime, parse: Callable[[Any], Any]) -> None:
    """Count one consult (the columns of `_period_rows` after the group's) into `acc`."""
    (status, created, acked, first_reply, answered, ack_due, answer_due,
     waiting_s, escalations, handoffs, reopens, helpful) = row  # fmt: skip
    created = parse(created)
    acked = acked and parse(acked)
    first_reply = first_reply and parse(first_reply)
    answered = answered and parse(answered)
    ack_due = ack_due and parse(ack_due)
    answer_due = answer_due and parse(answer_due)
    waiting_s = waiting_s or 0
    cancelled = status == Status.CANCELLED
    n = acc.counts
    n.consults += 1
    n.acknowledged += acked is not None
    n.answered += answered is not None
    n.closed += status == Status.CLOSED
    n.cancelled += cancelled
    n.escalated += (escalations or 0) > 0
    n.handed_off += (handoffs or 0) > 0
    n.reopened += (reopens or 0) > 0
    if waiting_s > 0:
        n.waiting_total += waiting_s
        n.waiting_n += 1
        acc.waiting.append(float(waiting_s))
    if not cancelled and (answered is not None or (answer_due is not None and answer_due < now)):
        n.sla_n += 1
        n.sla_ok += answered is not None and answer_due is not None and answered <= answer_due
    if not cancelled and (acked is not None or (ack_due is not None and ack_due < now)):
        n.ack_n += 1
        n.ack_ok += acked is not None and ack_due is not None and acked <= ack_due
    if helpful is not None:
        n.fb_n += 1
        n.fb_helpful += helpful is True
    if acked is not None:
        acc.tta.append(epoch_seconds(acked, created))
    if first_reply is not None:
        acc.ttfr.append(epoch_seconds(first_reply, created))
    if answered is not None:
        acc.ttans.append(epoch_seconds(answered, created, waiting_s))


def period_groups_python(
    session: Session, keys: Sequence[str], since: datetime, until: datetime, now: datetime
) -> dict[GroupKey, Group]:
    """Fetch the period's timing columns and aggregate them row by row in Python."""
    # SQLite keeps UTC times as ISO text; parsing it directly is several times faster than
    # the ORM type's conversion to aware datetimes, and naive UTC compares just as well.
    raw = session.get_bind().dialect.name == "sqlite"
    parse = datetime.fromisoformat if raw else _same
    if raw:
        now = now.replace(tzinfo=None)
    # One accumulator per (service, urgency, assignee), merged into the report's groups after.
    finest: dict[tuple[str, str, str | None], _Acc] = {}
    for service, urgency, assignee, *rest in session.execute(
        _period_rows(keys, since, until, raw=raw)
    ):
        acc = finest.get((service, urgency, assignee))
        if acc is None:
            acc = finest[(service, urgency, assignee)] = _Acc()
        _add_row(acc, rest, now, parse)
    accs: dict[GroupKey, _Acc] = {}
    for (service, urgency, assignee), part in finest.items():
        for key in group_keys(service, urgency, assignee):
            acc = accs.get(key)
            if acc is None:
                acc = accs[key] = _Acc()
            acc.merge(part)
    return {key: acc.finish() for key, acc in accs.items()}


def open_groups(
    session: Session, keys: Sequence[str], now: datetime
) -> dict[GroupKey, tuple[int, int]]:
    """(open now, overdue now) per group, over every open consult whatever its age."""
    overdue = case((due_now() < now, 1), else_=0)
    # Filtering on status alone keeps SQLite on the status index (open consults are few);
    # with a service filter too it may pick the service index and read every consult.
    stmt = (
        select(C.service, C.urgency, C.assignee, func.count(), func.sum(overdue))
        .where(C.status.in_(_OPEN_IN))
        .group_by(C.service, C.urgency, C.assignee)
    )
    wanted = set(keys)
    out: dict[GroupKey, tuple[int, int]] = {}
    for service, urgency, assignee, n, late in session.execute(stmt):
        if service not in wanted:
            continue
        for key in group_keys(service, urgency, assignee):
            was = out.get(key, (0, 0))
            out[key] = (was[0] + int(n), was[1] + int(late or 0))
    return out


def overdue_refs(
    session: Session, keys: Iterable[str], now: datetime
) -> dict[str, list[tuple[str, str | None]]]:
    """References (and permalinks) of consults overdue now, oldest first, per service."""
    stmt = (
        select(C.service, C.ref, C.permalink)
        .where(C.status.in_(_OPEN_IN), due_now() < now)  # status index: see open_groups
        .order_by(C.created_at, C.id)
    )
    out: dict[str, list[tuple[str, str | None]]] = {k: [] for k in keys}
    for service, ref, permalink in session.execute(stmt):
        if service in out:
            out[service].append((ref, permalink))
    return out
