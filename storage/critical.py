"""Queries over critical results: create once per origin, find, claim the due ones for the
re-notification sweep (row locks, SKIP LOCKED), and list them for App Home and the log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, load_only

from storage.db import add_once
from storage.models_critical import CriticalResult

PREFIX = "CRIT"
# What the report counts: never the patient, finding, callback or read-back.
_COUNTED = (
    CriticalResult.service,
    CriticalResult.sent_at,
    CriticalResult.acknowledged_at,
    CriticalResult.acknowledge_within,
    CriticalResult.forwarded_count,
    CriticalResult.escalated_at,
)


def create(*, session: Session, row: CriticalResult) -> bool:
    """Store `row` and give it its reference (`CRIT-<id>`); False when its origin key was
    stored before (a replayed command or form): nothing is added."""
    if not add_once(session, row):
        return False
    row.ref = f"{PREFIX}-{row.id}"
    session.flush()
    return True


def by_origin(*, session: Session, origin_key: str) -> CriticalResult | None:
    """The critical result a request already created."""
    stmt = select(CriticalResult).where(CriticalResult.origin_key == origin_key)
    return session.execute(stmt).scalar_one_or_none()


def by_ref(*, session: Session, ref: str, lock: bool = False) -> CriticalResult | None:
    """The critical result `ref` (`CRIT-12`); with `lock`, its row is locked for update."""
    stmt = select(CriticalResult).where(CriticalResult.ref == ref)
    if lock:
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def by_id(*, session: Session, critical_id: int) -> CriticalResult | None:
    """The critical result with this id."""
    return session.get(CriticalResult, critical_id)


def claim_due(*, session: Session, now: datetime, limit: int) -> Sequence[CriticalResult]:
    """Lock unacknowledged results whose re-notification is due; other processes skip them."""
    stmt = (
        select(CriticalResult)
        .where(
            CriticalResult.acknowledged_at.is_(None),
            CriticalResult.next_renotify_at <= now,
        )
        .order_by(CriticalResult.next_renotify_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return session.execute(stmt).scalars().all()


def unacknowledged(*, session: Session) -> Sequence[CriticalResult]:
    """Every critical result not yet acknowledged, oldest first."""
    stmt = (
        select(CriticalResult)
        .where(CriticalResult.acknowledged_at.is_(None))
        .order_by(CriticalResult.sent_at, CriticalResult.id)
    )
    return session.execute(stmt).scalars().all()


def sent_between(
    *,
    session: Session,
    since: datetime,
    until: datetime,
    services: Sequence[str] | None = None,
    counts_only: bool = False,
) -> Sequence[CriticalResult]:
    """Critical results sent in [since, until), optionally of some services, oldest first;
    with `counts_only`, only the columns the report counts (no patient data is read)."""
    stmt = select(CriticalResult)
    if counts_only:
        stmt = stmt.options(load_only(*_COUNTED, raiseload=True))
    stmt = stmt.where(CriticalResult.sent_at >= since, CriticalResult.sent_at < until)
    if services is not None:
        stmt = stmt.where(CriticalResult.service.in_(list(services)))
    stmt = stmt.order_by(CriticalResult.sent_at, CriticalResult.id)
    return session.execute(stmt).scalars().all()


def purge_acknowledged(*, session: Session, before: datetime) -> list[str]:
    """Clear the patient data (patient, finding, callback, read-back, forwarding reasons)
    of results acknowledged before `before`; who, when and to whom stay. Their references."""
    stmt = (
        select(CriticalResult)
        .where(CriticalResult.acknowledged_at < before, CriticalResult.patient.is_not(None))
        .with_for_update()
    )
    refs = []
    for r in session.execute(stmt).scalars():
        r.patient = r.finding = r.callback = r.read_back = None
        r.recipients = [{k: v for k, v in x.items() if k != "reason"} for x in r.recipients or []]
        refs.append(str(r.ref))
    return refs
