"""Cheap aggregate queries for metrics and readiness: the outbox backlog by kind, the
consults still open (and overdue) by service and urgency, and whether the schema is the
newest one. Counts and times only: nothing here reads patient data or free text."""

from __future__ import annotations

from datetime import datetime
from functools import cache

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, and_, case, func, or_, select
from sqlalchemy.orm import Session

from storage.db import alembic_config
from storage.models import Consult, OutboxMessage

# Statuses an undelivered message can have ("sending" is leased, possibly by a dead process).
UNDELIVERED = ("pending", "sending")
# `bot.domain.lifecycle.Status`, spelled out: storage imports nothing from `bot`.
_OPEN, _ACKNOWLEDGED, _WAITING = "open", "acknowledged", "waiting"


def outbox_backlog(*, session: Session) -> list[tuple[str, int, datetime]]:
    """(kind, undelivered messages, when the oldest of them was queued), per kind."""
    rows = session.execute(
        select(OutboxMessage.kind, func.count(), func.min(OutboxMessage.created_at))
        .where(OutboxMessage.status.in_(UNDELIVERED))
        .group_by(OutboxMessage.kind)
    ).all()
    return [(str(kind), int(count), oldest) for kind, count, oldest in rows]


def oldest_undelivered(*, session: Session) -> datetime | None:
    """When the oldest message not yet delivered was queued; None when none waits."""
    return session.execute(
        select(func.min(OutboxMessage.created_at)).where(OutboxMessage.status.in_(UNDELIVERED))
    ).scalar_one_or_none()


def open_consults(*, session: Session, now: datetime) -> list[tuple[str, str, int, int]]:
    """(service, urgency, open consults, overdue among them), per service and urgency.

    Overdue: open past its acknowledge-by time, or acknowledged past its answer-by time
    (a consult waiting for the requester has its clock paused, so it is never overdue)."""
    overdue = or_(
        and_(Consult.status == _OPEN, Consult.acknowledge_due_at < now),
        and_(Consult.status == _ACKNOWLEDGED, Consult.answer_due_at < now),
    )
    rows = session.execute(
        select(
            Consult.service,
            Consult.urgency,
            func.count(),
            func.coalesce(func.sum(case((overdue, 1), else_=0)), 0),
        )
        .where(Consult.status.in_((_OPEN, _ACKNOWLEDGED, _WAITING)))
        .group_by(Consult.service, Consult.urgency)
    ).all()
    return [(str(s), str(u), int(n), int(late)) for s, u, n, late in rows]


@cache
def _newest() -> frozenset[str]:
    """The shipped migrations' head revisions (read once: they do not change while running)."""
    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def schema_behind(engine: Engine) -> str | None:
    """None when the database is at the newest migration; else what it is at instead."""
    heads = _newest()
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    if current == heads:
        return None
    return ", ".join(sorted(current)) or "no schema"
