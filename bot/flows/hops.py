"""The per-hop clock in a unit of work: `settle` stores the hop a change has just ended,
in the change's own transaction, and `running_hop` / `hops_of` read a consult's hops as
`bot.domain.hops.Hop` values for its timeline.

The running hop lives on the consult row (`hop_role`, `hop_user`, `hop_service`,
`hop_since`; all NULL: its service's queue since it was created), so settling costs no
read: at most one INSERT (the finished hop) and the row's own UPDATE, which the change
makes anyway."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.domain.hops import NOBODY, Holder, Hop, HopRole, holder_of
from storage import hops as store
from storage.models import Consult


def stored_holder(consult: Consult) -> tuple[Holder | None, datetime]:
    """Who the row says holds the consult (None: nobody) and since when."""
    if consult.hop_role is None:
        return Holder(consult.service, HopRole.QUEUE), consult.created_at
    since = consult.hop_since or consult.created_at
    if consult.hop_role == NOBODY:
        return None, since
    service = consult.hop_service or consult.service
    return Holder(service, HopRole(consult.hop_role), consult.hop_user), since


def settle(session: Session, consult: Consult, now: datetime) -> bool:
    """After a change to `consult` (its row locked, in the change's transaction): when its
    holder is no longer the one stored, store the finished hop and the new holder from
    `now`. True when a hop ended or began."""
    held, since = stored_holder(consult)
    holder = holder_of(
        consult.status,
        service=consult.service,
        assignee=consult.assignee,
        requester=consult.requester,
    )
    if holder == held:
        return False
    if held is not None:
        store.add_hop(
            session=session,
            consult_id=consult.id,
            service=held.service,
            role=held.role.value,
            user=held.user,
            started_at=since,
            ended_at=max(now, since),
        )
    consult.hop_role = holder.role.value if holder else NOBODY
    consult.hop_user = holder.user if holder else None
    consult.hop_service = holder.service if holder else None
    consult.hop_since = now
    return True


def pin(consult: Consult) -> None:
    """Before a change of the consult's service (a transfer): write out the running hop's
    service on the row, so a queue hop that was never settled (all NULL: "its service's
    queue") is still charged to the service it ran in once `settle` compares."""
    if consult.hop_role is None:
        consult.hop_role = HopRole.QUEUE.value
        consult.hop_service = consult.service
        consult.hop_since = consult.created_at


def running_hop(consult: Consult) -> Hop | None:
    """The hop that runs now (None: nobody holds the consult)."""
    held, since = stored_holder(consult)
    if held is None:
        return None
    return Hop(held.service, held.role, held.user, since)


def hops_of(session: Session, consult: Consult) -> list[Hop]:
    """The consult's finished hops, oldest first."""
    return [
        Hop(h.service, HopRole(h.role), h.user, h.started_at, h.ended_at)
        for h in store.hops_of(session=session, consult_id=consult.id)
    ]
