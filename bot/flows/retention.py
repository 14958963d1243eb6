"""Retention: removes patient references and free text from consults closed or cancelled
longer ago than a limit (closing answered ones whose answer is older than the limit), from
critical results acknowledged and follow-ups done longer ago than it (an open follow-up keeps
what is owed until it is done),
keeping their timings for reports, and deletes delivered outbox messages older than the
limit (their parameters may quote free text, e.g. a hand-off note sent to someone with no
consult attached). Every purge is audited."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from bot.domain.clock import Clock, SystemClock
from bot.domain.durations import parse_duration
from bot.domain.lifecycle import Action
from bot.flows import hops
from bot.flows.work import Audit, apply_transition, audit_change
from bot.settings import Settings
from storage import critical, followups, repo
from storage.db import create_db_engine, migrate, session_factory, unit_of_work
from storage.models import OutboxMessage


def purge(
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    older_than: timedelta,
    actor: str = "careloop",
) -> list[str]:
    """Purge old closed consults in one transaction; returns the references purged."""
    now = clock.now()
    with unit_of_work(sessions) as s:
        return purge_session(s, older_than=older_than, now=now, actor=actor)


def purge_session(
    session: Session, *, older_than: timedelta, now: datetime, actor: str
) -> list[str]:
    """Purge inside an open session (shared by the CLI and the scheduled job)."""
    before = now - older_than
    # An answered consult nobody closed is done too once its answer is older than the
    # limit: it is closed here (audited, by `actor`) and purged with the others, so no
    # patient data outlives the limit and nothing purged can be reopened.
    closed = []
    for consult in repo.answered_before(session=session, before=before):
        audit = Audit(actor, now, event="closed", details={"reason": "retention"})
        apply_transition(session, consult, Action.CLOSE, audit)
        consult.closed_at = now
        consult.next_nudge_at = None
        consult.nudge_phase = None
        hops.settle(session, consult, now)  # answered: no hop runs; kept for symmetry
        closed.append(consult.id)
    refs = repo.purge_closed(session=session, before=before, at=now, also=closed)
    results = critical.purge_acknowledged(session=session, before=before)
    owed = followups.purge_done(session=session, before=before)
    done = session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.created_at < before,
            OutboxMessage.status.in_(("sent", "failed", "superseded")),
        )
    )
    messages = int(getattr(done, "rowcount", 0) or 0)
    if refs or messages or results or owed:
        audit_change(
            session,
            "purged",
            actor=actor,
            now=now,
            details={
                "count": len(refs),
                "refs": refs[:500],
                "outbox_messages": messages,
                "critical_results": len(results),
                "followups": len(owed),
                "older_than_s": older_than.total_seconds(),
            },
        )
    return refs


def purge_cli(settings: Settings, *, older_than: str) -> int:
    """`python -m bot purge --older-than 365d`."""
    try:
        limit = parse_duration(older_than)
    except ValueError as exc:
        print(f"--older-than: {exc}", file=sys.stderr)
        return 2
    engine = create_db_engine(settings.database_url)
    migrate(engine)
    refs = purge(
        sessions=session_factory(engine), clock=SystemClock(), older_than=limit, actor="cli"
    )
    engine.dispose()
    print(f"purged {len(refs)} consult(s) closed more than {older_than} ago")
    return 0
