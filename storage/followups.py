"""Queries over follow-ups: create once per origin (`FU-<id>`), find, lock, claim the overdue
ones for the sweep (row locks, SKIP LOCKED), the ones waiting on a consult's answer, a
person's open ones, the report's rows (no patient data read) and the retention purge."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from storage.db import add_once
from storage.models import Consult
from storage.models_followups import FollowUp

PREFIX = "FU"


def create(*, session: Session, row: FollowUp) -> bool:
    """Store `row` and give it its reference (`FU-<id>`, one sequence for all); False when
    its origin key was stored before (a replayed command or form): nothing is added."""
    if not add_once(session, row):
        return False
    row.ref = f"{PREFIX}-{row.id}"
    session.flush()
    return True


def by_origin(*, session: Session, origin_key: str) -> FollowUp | None:
    """The follow-up a request already created."""
    stmt = select(FollowUp).where(FollowUp.origin_key == origin_key)
    return session.execute(stmt).scalar_one_or_none()


def by_ref(*, session: Session, ref: str, lock: bool = False) -> FollowUp | None:
    """The follow-up `ref` (`FU-12`); with `lock`, its row is locked for update."""
    stmt = select(FollowUp).where(FollowUp.ref == ref)
    if lock:
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def by_id(*, session: Session, followup_id: int) -> FollowUp | None:
    """The follow-up with this id."""
    return session.get(FollowUp, followup_id)


# `Session.info` key: ids of consults a press found (under the consult's row lock, which
# creating a follow-up linked to it takes too) to have no follow-up waiting on its answer.
NONE_WAITING = "careloop.followups.none_waiting"
# The follow-ups `waiting_on_answer` returns (also asked by `storage.press`).
WAITING = and_(FollowUp.answer_at.is_(None), FollowUp.done_at.is_(None))


def waiting_on_answer(*, session: Session, consult_id: int) -> Sequence[FollowUp]:
    """Open follow-ups of a consult whose answer has not arrived yet, locked, oldest first;
    none, without a query, when this unit's press found none (`NONE_WAITING`)."""
    if consult_id in session.info.get(NONE_WAITING, ()):
        return []
    stmt = (
        select(FollowUp)
        .where(FollowUp.consult_id == consult_id, WAITING)
        .order_by(FollowUp.id)
        .with_for_update()
    )
    return session.execute(stmt).scalars().all()


def claim_due(*, session: Session, now: datetime, limit: int) -> Sequence[FollowUp]:
    """Lock open follow-ups whose next nudge is due, oldest first; other processes skip
    them (on SQLite the write lock of `BEGIN IMMEDIATE` serialises sweeps)."""
    stmt = (
        select(FollowUp)
        .where(FollowUp.done_at.is_(None), FollowUp.next_nudge_at <= now)
        .order_by(FollowUp.next_nudge_at, FollowUp.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return session.execute(stmt).scalars().all()


def open_owned_by(*, session: Session, user: str) -> Sequence[FollowUp]:
    """`user`'s open follow-ups: due first (soonest first), then those waiting on an answer."""
    stmt = select(FollowUp).where(FollowUp.owner == user, FollowUp.done_at.is_(None))
    rows = session.execute(stmt.order_by(FollowUp.id)).scalars().all()
    return sorted(rows, key=lambda f: (f.due_at is None, f.due_at or f.created_at, f.id))


def report_rows(*, session: Session, since: datetime, until: datetime, now: datetime) -> list[Any]:
    """What the report counts, never the patient, what is owed or the note: (service of the
    linked consult or None, created, done, due) of the follow-ups opened in [since, until)
    and of every follow-up open at `now` (the overdue count is of now)."""
    columns = (Consult.service, FollowUp.created_at, FollowUp.done_at, FollowUp.due_at)
    stmt = (
        select(*columns, FollowUp.id)
        .outerjoin(Consult, Consult.id == FollowUp.consult_id)
        .where(
            ((FollowUp.created_at >= since) & (FollowUp.created_at < until))
            | (FollowUp.done_at.is_(None) & (FollowUp.due_at < now))
        )
        .order_by(FollowUp.id)
    )
    return list(session.execute(stmt).all())


def purge_done(*, session: Session, before: datetime) -> list[str]:
    """Clear the patient data (patient, what is owed, the note) of follow-ups done before
    `before`; who, when and how it ended stay. Their references."""
    stmt = (
        select(FollowUp)
        .where(FollowUp.done_at < before, FollowUp.owed.is_not(None))
        .with_for_update()
    )
    refs = []
    for f in session.execute(stmt).scalars():
        f.patient = f.owed = f.note = None
        refs.append(str(f.ref))
    return refs
