"""Queries over requester covers: who covers a requester now (`cover_for`), whom someone
covers now (`covered_by`), starting and ending a cover, the lock that serialises cover
changes (so two concurrent changes cannot build a chain), and the requester's consults a
cover takes on. User ids and times only: no patient data."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from storage.models import Consult
from storage.models_cover import RequesterCover

# Any constant shared by CareLoop processes (storage.db, storage.creation and the
# delivery lock use 0x0CA2E100..0x0CA2E102).
COVER_LOCK_ID = 0x0CA2E1C0
# A requester's consults a cover may still act on: open, waiting, or answered (to close).
NOT_DONE = ("open", "acknowledged", "waiting", "answered")


def cover_for(session: Session, user: str) -> str | None:
    """Who covers `user` now (receives what CareLoop sends them as requester); None: nobody."""
    stmt = select(RequesterCover.cover).where(
        RequesterCover.user == user, RequesterCover.ended_at.is_(None)
    )
    return session.execute(stmt).scalar_one_or_none()


def covered_by(session: Session, user: str) -> list[str]:
    """Whom `user` covers now, in the order the covers started."""
    stmt = (
        select(RequesterCover.user)
        .where(RequesterCover.cover == user, RequesterCover.ended_at.is_(None))
        .order_by(RequesterCover.started_at, RequesterCover.id)
    )
    return list(session.execute(stmt).scalars())


def covers_between(session: Session, user: str, since: datetime, until: datetime) -> list[str]:
    """Everyone who covered `user` at some moment from `since` to `until`, in order."""
    stmt = (
        select(RequesterCover.cover)
        .where(
            RequesterCover.user == user,
            RequesterCover.started_at <= until,
            (RequesterCover.ended_at.is_(None)) | (RequesterCover.ended_at >= since),
        )
        .order_by(RequesterCover.started_at, RequesterCover.id)
    )
    return list(dict.fromkeys(session.execute(stmt).scalars()))


def in_force(session: Session, user: str) -> RequesterCover | None:
    """The cover of `user` in force now (with when it started), if any."""
    stmt = select(RequesterCover).where(
        RequesterCover.user == user, RequesterCover.ended_at.is_(None)
    )
    return session.execute(stmt).scalar_one_or_none()


def lock_changes(session: Session) -> None:
    """Serialise cover changes until the transaction ends: on PostgreSQL a transaction
    advisory lock; SQLite's `BEGIN IMMEDIATE` already holds the write lock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": COVER_LOCK_ID})


def start(session: Session, *, user: str, cover: str, at: datetime) -> None:
    """`cover` covers `user` from `at` (end any cover of `user` in force first)."""
    session.add(RequesterCover(user=user, cover=cover, started_at=at))
    session.flush()


def end(session: Session, *, user: str, at: datetime) -> str | None:
    """End the cover of `user` in force; who covered (None: nobody did)."""
    current = in_force(session, user)
    if current is None:
        return None
    session.execute(
        update(RequesterCover).where(RequesterCover.id == current.id).values(ended_at=at)
    )
    return current.cover


def requested_not_done(session: Session, user: str) -> Sequence[Consult]:
    """The consults `user` requested that are not closed or cancelled, oldest first."""
    stmt = (
        select(Consult)
        .where(Consult.requester == user, Consult.status.in_(NOT_DONE))
        .order_by(Consult.created_at, Consult.id)
    )
    return session.execute(stmt).scalars().all()


def covered_requests(session: Session, user: str) -> Sequence[Consult]:
    """The consults, not closed or cancelled, of every requester `user` covers now, oldest
    first (what a covering clinician's App Home and `/consult list` show)."""
    whom = select(RequesterCover.user).where(
        RequesterCover.cover == user, RequesterCover.ended_at.is_(None)
    )
    stmt = (
        select(Consult)
        .where(Consult.requester.in_(whom), Consult.status.in_(NOT_DONE))
        .order_by(Consult.created_at, Consult.id)
    )
    return session.execute(stmt).scalars().all()
