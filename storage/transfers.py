"""Query functions for transfers (a consult moved to another service): record one, find a
consult by a reference it had before, the transfers of a period for the reports, and what
the consult still has queued for the card it leaves."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ScalarSelect, or_, select
from sqlalchemy.orm import Session

from storage.models import OutboxMessage
from storage.models_transfers import ConsultTransfer

# A card update or thread note addressed to the card a consult left behind when it was
# transferred carries that card's ts in this param, and its channel in the payload.
LEFT_CARD = "left_card_ts"


def add_transfer(*, session: Session, transfer: ConsultTransfer) -> None:
    """Record one transfer (flushed with the caller's unit of work)."""
    session.add(transfer)


def former_ref_consult_id(ref: Any) -> ScalarSelect[int]:
    """The id of the consult that had reference `ref` (upper-case, or a bound parameter
    holding it) before a transfer, as a scalar subquery (NULL: none) for a statement that
    must also find it in one round trip."""
    moved = select(ConsultTransfer.consult_id).where(ConsultTransfer.from_ref == ref)
    return moved.scalar_subquery()


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


def readdress_queued(
    *, session: Session, consult_id: int, channel: str, ts: str | None, drop: Collection[str]
) -> None:
    """What the consult still has queued for the card it is leaving (a transfer), while
    its row points at the new card: its card post and card updates are dropped (marked
    `superseded`, never sent: the card goes to the new service, and the old card gets its
    own last update), and so are its thread notes whose template is in `drop` (nudges: they
    would mention the old service's people); its other thread notes go to the old card's
    thread (`channel` and `LEFT_CARD`), or, when that card was never posted (`ts` None),
    nowhere."""
    stmt = (
        select(OutboxMessage)
        .where(
            OutboxMessage.consult_id == consult_id,
            OutboxMessage.status == "pending",
            OutboxMessage.kind.in_(("post", "update", "thread")),
        )
        .with_for_update()
    )
    for msg in session.execute(stmt).scalars():
        payload = dict(msg.payload or {})
        if msg.kind != "thread" or ts is None or payload.get("template") in drop:
            msg.status = "superseded"
            continue
        params = dict(payload.get("params") or {}) | {LEFT_CARD: ts}
        msg.payload = payload | {"channel": channel, "params": params}
