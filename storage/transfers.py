"""Query functions for transfers (a consult moved to another service): record one, find a
consult by a reference it had before, the transfers of a period for the reports, and the
consult's card posts still queued when it moves."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from storage.models import Consult, OutboxMessage
from storage.models_transfers import ConsultTransfer


def add_transfer(*, session: Session, transfer: ConsultTransfer) -> None:
    """Record one transfer (flushed with the caller's unit of work)."""
    session.add(transfer)


def by_former_ref(*, session: Session, ref: str, lock: bool = False) -> Consult | None:
    """The consult that had reference `ref` before a transfer (optionally locked)."""
    moved = select(ConsultTransfer.consult_id).where(ConsultTransfer.from_ref == ref.upper())
    stmt = select(Consult).where(Consult.id == moved.scalar_subquery())
    if lock:
        stmt = stmt.with_for_update(key_share=True)
    return session.execute(stmt).scalar_one_or_none()


def made_between(
    *, session: Session, since: datetime, until: datetime, services: Sequence[str]
) -> Sequence[ConsultTransfer]:
    """Transfers made in ``[since, until)`` from or to any of `services`, oldest first."""
    keys = list(services)
    stmt = (
        select(ConsultTransfer)
        .where(
            ConsultTransfer.at >= since,
            ConsultTransfer.at < until,
            or_(ConsultTransfer.from_service.in_(keys), ConsultTransfer.to_service.in_(keys)),
        )
        .order_by(ConsultTransfer.at, ConsultTransfer.id)
    )
    return session.execute(stmt).scalars().all()


def card_post_in_flight(*, session: Session, consult_id: int) -> bool:
    """Whether the consult's card is being posted right now (leased for sending)."""
    stmt = select(OutboxMessage.id).where(
        OutboxMessage.consult_id == consult_id,
        OutboxMessage.kind == "post",
        OutboxMessage.status == "sending",
    )
    return session.execute(stmt).first() is not None


def drop_queued_card_posts(*, session: Session, consult_id: int) -> int:
    """Mark the consult's card posts still queued `superseded` (never sent): after a
    transfer, the card goes to the new service instead. Returns how many."""
    done = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.consult_id == consult_id,
            OutboxMessage.kind == "post",
            OutboxMessage.status == "pending",
        )
        .values(status="superseded")
        .execution_options(synchronize_session=False)
    )
    return int(done.rowcount or 0)
