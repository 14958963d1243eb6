"""Queries over the per-hop clock: store a finished hop, a consult's hops in order, and a
period's hops one by one (by service and end time, with the consult's urgency: the
hop-by-hop reading the report's vectorised time held, `bot.reports.holders_pg`, is tested
against)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Consult
from storage.models_hops import ConsultHop


def add_hop(
    *,
    session: Session,
    consult_id: int,
    service: str,
    role: str,
    user: str | None,
    started_at: datetime,
    ended_at: datetime,
) -> None:
    """Store one finished hop (inserted with the caller's transaction, at its flush)."""
    hop = ConsultHop()  # its values in its dict, as the constructor stores them, minus events
    hop.__dict__.update(
        consult_id=consult_id,
        service=service,
        role=role,
        user=user,
        started_at=started_at,
        ended_at=ended_at,
    )
    session.add(hop)


def hops_of(*, session: Session, consult_id: int) -> Sequence[ConsultHop]:
    """A consult's finished hops, oldest first."""
    stmt = (
        select(ConsultHop)
        .where(ConsultHop.consult_id == consult_id)
        .order_by(ConsultHop.started_at, ConsultHop.id)
    )
    return session.execute(stmt).scalars().all()


def ended_between(
    *, session: Session, services: Sequence[str], since: datetime, until: datetime
) -> Sequence[Any]:
    """(service, role, user, urgency, started_at, ended_at) of the hops of `services` that
    ended in ``[since, until)``, in a stable order (ix_consult_hops_service_ended)."""
    H = ConsultHop
    stmt = (
        select(H.service, H.role, H.user, Consult.urgency, H.started_at, H.ended_at)
        .join(Consult, Consult.id == H.consult_id)
        .where(H.service.in_(list(services)), H.ended_at >= since, H.ended_at < until)
        .order_by(H.service, H.ended_at, H.id)
    )
    return session.execute(stmt).all()
