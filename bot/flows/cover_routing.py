"""Where a requester's direct message goes, decided when it is delivered: to whoever
covers for them at that moment (`storage.covers.cover_for`, read from the database in
delivery's own session, so every process and a restart see the same answer and a cover
ended while the message waited is honoured), else to them; and, for a retry, who else an
earlier attempt may have reached (`earlier_recipients`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.domain.vocabulary import Kind
from storage import covers
from storage.models import OutboxMessage


def recipient(session: Session, msg: OutboxMessage) -> tuple[str, str | None]:
    """(who receives `msg`, whom they receive it for — None: for themselves). Only a
    direct message queued as `covered` (`Notify.dm_covered`, `Notify.dm_requester`) may
    go to someone else; one level: the cover's own cover is not followed."""
    payload = msg.payload or {}
    user = str(payload.get("user") or "")
    if msg.kind != Kind.DM or not payload.get("covered") or not user:
        return user, None
    cover = covers.cover_for(session, user)
    return (cover, user) if cover else (user, None)


def earlier_recipients(session: Session, msg: OutboxMessage, to: str, now: datetime) -> list[str]:
    """Whose direct messages an earlier attempt of `msg` may have reached, other than `to`:
    for a covered DM tried before (a timeout, a crash), the requester and everyone who
    covered them since it was queued. Delivery looks there too before sending again, so a
    cover that changed between two attempts cannot make a second copy."""
    payload = msg.payload or {}
    user = str(payload.get("user") or "")
    if msg.kind != Kind.DM or not payload.get("covered") or not user or msg.attempts < 2:
        return []
    since = msg.created_at or now
    maybe = [user, *covers.covers_between(session, user, since, now)]
    return [u for u in dict.fromkeys(maybe) if u != to]
