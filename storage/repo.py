"""Small keyword-only query functions over the CareLoop tables: the only place with SQL
outside migrations and reports. Each takes the session of the caller's unit of work."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage import transfers
from storage.db import add_once
from storage.models import (
    OPEN_CONSULT_SQL,
    AuditEvent,
    Consult,
    OnCall,
    OutboxMessage,
    ProcessedKey,
    Reply,
)

# `bot.domain.lifecycle.OPEN_STATES`, spelled out: storage imports nothing from `bot`.
OPEN_STATUSES = ("open", "acknowledged", "waiting")
assert OPEN_CONSULT_SQL == "status IN (" + ", ".join(f"'{s}'" for s in OPEN_STATUSES) + ")"


def get_consult(*, session: Session, consult_id: int, lock: bool = False) -> Consult | None:
    """A consult by id, optionally locked for update."""
    stmt = select(Consult).where(Consult.id == consult_id)
    if lock:
        stmt = stmt.with_for_update(key_share=True)
    return session.execute(stmt).scalar_one_or_none()


def get_consults(*, session: Session, consult_ids: list[int]) -> list[Consult]:
    """The consults with these ids, in the order given (missing ones left out), read in
    one query."""
    rows = session.execute(select(Consult).where(Consult.id.in_(consult_ids))).scalars()
    by_id = {c.id: c for c in rows}
    return [by_id[i] for i in consult_ids if i in by_id]


def get_by_ref(*, session: Session, ref: str, lock: bool = False) -> Consult | None:
    """A consult by its human reference (RAD-42), or by one it had before a transfer."""
    stmt = select(Consult).where(named(ref.upper()))
    if lock:
        stmt = stmt.with_for_update(key_share=True)
    return session.execute(stmt).scalar_one_or_none()


def named(ref: Any) -> Any:
    """The consult `ref` names, as SQL: its reference now, or (one index look-up more) one
    it had before a transfer. References are never reused, so at most one matches. `ref`:
    an upper-case reference, or a bound parameter holding one (`storage.press`)."""
    return or_(Consult.ref == ref, Consult.id == transfers.former_ref_consult_id(ref))


def get_by_origin(*, session: Session, origin_key: str) -> Consult | None:
    """The consult created by a given Slack trigger/view, if any."""
    return session.execute(
        select(Consult).where(Consult.origin_key == origin_key)
    ).scalar_one_or_none()


def origin_taken(*, session: Session, origin_key: str) -> bool:
    """Whether a consult was created by this Slack trigger/view (reads no consult)."""
    stmt = select(Consult.id).where(Consult.origin_key == origin_key)
    return session.execute(stmt).first() is not None


def get_by_message(*, session: Session, channel: str, ts: str) -> Consult | None:
    """The consult whose channel message is (channel, ts)."""
    return session.execute(
        select(Consult).where(Consult.channel == channel, Consult.channel_ts == ts)
    ).scalar_one_or_none()


def open_for_patient(
    *, session: Session, patient_key: str, exclude_id: int | None = None
) -> Sequence[Consult]:
    """Open consults about one patient, across services, oldest first."""
    stmt = select(Consult).where(
        Consult.patient_key == patient_key, Consult.status.in_(OPEN_STATUSES)
    )
    if exclude_id is not None:
        stmt = stmt.where(Consult.id != exclude_id)
    return session.execute(stmt.order_by(Consult.created_at)).scalars().all()


def open_for_user(*, session: Session, user: str) -> Sequence[Consult]:
    """Open or answered consults a user requested or is assigned, oldest first."""
    stmt = (
        select(Consult)
        .where(
            or_(Consult.requester == user, Consult.assignee == user),
            Consult.status.in_((*OPEN_STATUSES, "answered")),
        )
        .order_by(Consult.created_at)
    )
    return session.execute(stmt).scalars().all()


def assigned_open(*, session: Session, user: str) -> Sequence[Consult]:
    """Open consults assigned to a user (their handoff set), locked for update."""
    stmt = (
        select(Consult)
        .where(Consult.assignee == user, Consult.status.in_(OPEN_STATUSES))
        .order_by(Consult.created_at)
        .with_for_update()
    )
    return session.execute(stmt).scalars().all()


def unassigned_open(
    *, session: Session, service: str, limit: int | None = None
) -> Sequence[Consult]:
    """Open, unacknowledged consults of a service, oldest first (the first `limit` only)."""
    stmt = (
        select(Consult)
        .where(Consult.service == service, Consult.status == "open")
        .order_by(Consult.created_at)
        .limit(limit)
    )
    return session.execute(stmt).scalars().all()


def count_unassigned_open(*, session: Session, services: Sequence[str]) -> int:
    """How many open, unacknowledged consults the given services have."""
    if not services:
        return 0
    stmt = select(func.count()).where(Consult.service.in_(list(services)), Consult.status == "open")
    return int(session.execute(stmt).scalar_one())


def move_unowned_to(*, session: Session, service: str, user: str) -> list[int]:
    """Make `user` the on-call of the service's open consults nobody owns yet (one UPDATE,
    so a consult acknowledged meanwhile keeps its owner); returns their ids."""
    stmt = (
        update(Consult)
        .where(
            Consult.service == service,
            Consult.status == "open",
            Consult.assignee.is_(None),
            or_(Consult.on_call.is_(None), Consult.on_call != user),
        )
        .values(on_call=user, version=Consult.version + 1)
        .returning(Consult.id)
    )
    return sorted(int(i) for i in session.execute(stmt).scalars())


def open_consults(*, session: Session, services: Sequence[str] | None = None) -> Sequence[Consult]:
    """All open consults (optionally of some services), oldest first."""
    stmt = select(Consult).where(Consult.status.in_(OPEN_STATUSES))
    if services is not None:
        stmt = stmt.where(Consult.service.in_(list(services)))
    return session.execute(stmt.order_by(Consult.created_at)).scalars().all()


def claim_due_nudges(*, session: Session, now: datetime, limit: int) -> Sequence[Consult]:
    """Lock consults whose next nudge is due; other processes skip the locked rows."""
    return session.execute(due_nudges_statement(now=now, limit=limit)).scalars().all()


def due_nudges_statement(*, now: datetime, limit: int) -> Any:
    """The claim of `claim_due_nudges` as a statement (the sweep benchmark EXPLAINs it)."""
    return (
        select(Consult)
        # Spelled as the partial index's predicate, in SQL (not bound parameters), so the
        # planner can use ix_consults_open_next_nudge even with a prepared statement.
        .where(text(OPEN_CONSULT_SQL), Consult.next_nudge_at <= now)
        .order_by(Consult.next_nudge_at)
        .limit(limit)
        # NO KEY UPDATE: the sweep changes no key, so it need not wait for (or skip rows
        # behind) the key-share locks that inserting a consult's outbox rows takes.
        .with_for_update(skip_locked=True, key_share=True)
    )


_INSERT_AUDIT = insert(AuditEvent.__table__)
# `Session.info` key: the audit events `storage.press` holds for its one statement.
HELD_AUDITS = "careloop.press.audits"


def add_audit(
    *,
    session: Session,
    consult_id: int | None,
    actor: str,
    action: str,
    at: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one audit event, as one INSERT (no ORM object, no flush); in a unit whose
    writes `storage.press` holds, kept in order for its one statement instead."""
    row = {
        "consult_id": consult_id,
        "actor": actor,
        "action": action,
        "at": at,
        "details": details or {},
    }
    held = session.info.get(HELD_AUDITS)
    if held is not None:
        held.append(row)
        return
    session.execute(_INSERT_AUDIT, row)


def insert_audits(*, session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert audit events held by `storage.press` (the columns of `add_audit`), in order."""
    for row in rows:
        session.execute(_INSERT_AUDIT, row)


def audit_for(*, session: Session, consult_id: int) -> Sequence[AuditEvent]:
    """A consult's audit trail, oldest first."""
    stmt = select(AuditEvent).where(AuditEvent.consult_id == consult_id).order_by(AuditEvent.id)
    return session.execute(stmt).scalars().all()


def claim_key(
    *, session: Session, key: str, at: datetime, result: dict[str, Any] | None = None
) -> bool:
    """Record that a logical Slack action was handled; False if it already was. One
    statement, no savepoint: `INSERT … ON CONFLICT DO NOTHING RETURNING` (a concurrent
    claim of the same key waits for the first to commit or roll back, then finds it)."""
    dialect = session.get_bind().dialect.name
    if dialect not in _UPSERTS:
        try:
            with session.begin_nested():
                session.add(ProcessedKey(key=key, at=at, result=result or {}))
                session.flush()
            return True
        except IntegrityError:
            return False
    stmt = (
        _UPSERTS[dialect](ProcessedKey.__table__)
        .values(key=key, at=at, result=result or {})
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(ProcessedKey.__table__.c.key)
    )
    return session.execute(stmt).first() is not None


_UPSERTS: dict[str, Any] = {"postgresql": pg_insert, "sqlite": sqlite_insert}


def get_key(*, session: Session, key: str) -> ProcessedKey | None:
    """The stored outcome of an already-handled action."""
    return session.get(ProcessedKey, key)


def add_reply(*, session: Session, reply: Reply) -> bool:
    """Store a thread reply once; False if that message ts was already stored."""
    return add_once(session, reply)


def latest_reply(*, session: Session, consult_id: int, user: str | None = None) -> Reply | None:
    """The newest reply in a consult's thread (by one user, if given)."""
    stmt = select(Reply).where(Reply.consult_id == consult_id)
    if user is not None:
        stmt = stmt.where(Reply.user == user)
    return session.execute(stmt.order_by(Reply.at.desc(), Reply.id.desc()).limit(1)).scalar()


def latest_consultant_reply(*, session: Session, consult_id: int) -> Reply | None:
    """The newest reply not written by the requester."""
    stmt = (
        select(Reply)
        .where(Reply.consult_id == consult_id, Reply.by_requester.is_(False))
        .order_by(Reply.at.desc(), Reply.id.desc())
        .limit(1)
    )
    return session.execute(stmt).scalar()


def on_call_overrides(*, session: Session) -> dict[str, tuple[str, datetime | None]]:
    """Service key → (user, until) set in Slack with /consult oncall."""
    rows = session.execute(select(OnCall)).scalars()
    return {row.service: (row.user, row.until) for row in rows}


def set_on_call(
    *,
    session: Session,
    service: str,
    user: str,
    set_by: str,
    at: datetime,
    until: datetime | None = None,
) -> None:
    """Record who is on call for a service now (until `until`, if given)."""
    row = session.get(OnCall, service)
    if row is None:
        session.add(OnCall(service=service, user=user, set_by=set_by, set_at=at, until=until))
    else:
        row.user, row.set_by, row.set_at, row.until = user, set_by, at, until


def assigned_open_in(*, session: Session, user: str, service: str) -> Sequence[Consult]:
    """`user`'s open consults (any open state) at `service`, oldest first."""
    return [c for c in assigned_open(session=session, user=user) if c.service == service]


def answered_before(*, session: Session, before: datetime) -> Sequence[Consult]:
    """Answered consults that nobody closed, answered before `before`, locked."""
    stmt = select(Consult).where(
        Consult.status == "answered", Consult.answered_at < before, Consult.purged_at.is_(None)
    )
    return session.execute(stmt.with_for_update(key_share=True)).scalars().all()


def purge_closed(
    *, session: Session, before: datetime, at: datetime, also: Sequence[int] = ()
) -> list[str]:
    """Blank patient references and free text of consults closed before `before` (and of
    the consults with ids in `also`)."""
    old = (Consult.status.in_(("closed", "cancelled"))) & (
        func.coalesce(Consult.closed_at, Consult.cancelled_at) < before
    )
    rows = (
        session.execute(
            select(Consult).where(
                or_(old, Consult.id.in_(list(also))) if also else old,
                Consult.purged_at.is_(None),
            )
        )
        .scalars()
        .all()
    )
    ids = [c.id for c in rows]
    for consult in rows:
        consult.patient = consult.patient_key = consult.question = consult.answer = None
        consult.feedback_comment = consult.transfer_reason = None
        consult.intake = {}
        consult.purged_at = at
    if ids:
        session.execute(update(Reply).where(Reply.consult_id.in_(ids)).values(text=None))
        session.execute(
            delete(OutboxMessage).where(
                OutboxMessage.consult_id.in_(ids),
                OutboxMessage.status.in_(("sent", "failed", "superseded")),
            )
        )
    return [c.ref for c in rows]


# Not closed or cancelled: the sweep still watches them, or the requester may still reopen.
UNFINISHED_STATUSES = (*OPEN_STATUSES, "answered")


def unfinished_outside(
    *, session: Session, services: Sequence[str], sample: int = 5
) -> dict[str, tuple[int, list[str]]]:
    """Unfinished consults whose service key is not in `services`, by that key: how many,
    and the references of the oldest `sample` of them (references only, never PHI)."""
    counts = session.execute(
        select(Consult.service, func.count())
        .where(Consult.status.in_(UNFINISHED_STATUSES), Consult.service.not_in(list(services)))
        .group_by(Consult.service)
        .order_by(Consult.service)
    ).all()
    found: dict[str, tuple[int, list[str]]] = {}
    for key, count in counts:
        refs = session.execute(
            select(Consult.ref)
            .where(Consult.service == key, Consult.status.in_(UNFINISHED_STATUSES))
            .order_by(Consult.created_at, Consult.id)
            .limit(sample)
        ).scalars()
        found[str(key)] = (int(count), list(refs))
    return found
