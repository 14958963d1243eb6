"""Messages about a follow-up to the person who owes it, decided in one place:
`recipients_for` says who receives what is meant for an owner (the owner, and
whoever covers for them), `tell_owner` queues the owner's message exactly once, and
`consult_answered` is the hook the consult's answer calls in its own transaction: every
open follow-up waiting on that answer gets its due time (`due_within` after it) and its
owner is told at once (`consult_cancelled` likewise when the consult is cancelled: no answer
will come). Also the follow-ups' audit event (consult_id NULL, like critical
results: the follow-up's id and reference in `details`, never the patient)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from bot.domain.vocabulary import FollowUpStep, Template
from bot.flows.notify import Notify
from storage import covers, followups, repo
from storage.models import Consult
from storage.models_followups import FollowUp


def recipients_for(session: Session, owner: str) -> list[str]:
    """Who receives the messages meant for `owner` of a follow-up (and may act as them):
    the owner first, then whoever covers for them now (`/consult cover`). The ONE place
    that decides it."""
    cover = covers.cover_for(session, owner)
    return [owner] if cover is None or cover == owner else [owner, cover]


def audit(
    s: Session, f: FollowUp, step: FollowUpStep, actor: str, at: datetime, **more: Any
) -> None:
    """One audit event of a follow-up (consult_id NULL, its id and ref in details; no PHI)."""
    details = {"followup": f.id, "ref": f.ref, **more}
    repo.add_audit(session=s, consult_id=None, actor=actor, action=step, at=at, details=details)


def tell_owner(notify: Notify, f: FollowUp, why: str, key: str, **params: Any) -> list[str]:
    """The owner's message (what is owed, Done and Hand over), to everyone `recipients_for`
    names, each once under `followup:<id>:<key>:<user>`; who was told."""
    told = []
    for user in recipients_for(notify.session, f.owner):
        extra = {"covering": f.owner} if user != f.owner else {}
        once = notify.once(f"followup:{f.id}:{key}:{user}")
        if once.dm_user(
            user, Template.FOLLOWUP_OWED, {"followup": f.id, "why": why, **params, **extra}
        ):
            told.append(user)
    return told


def consult_answered(notify: Notify, consult: Consult) -> list[str]:
    """The consult's answer is in (its transaction, `notify.now`): each open follow-up
    waiting on it without a fixed time is due `due_within` from now; every owner is told,
    once, that the answer is in and what is owed. The references told."""
    return _settle_waiting(notify, consult, "answer_in")


def consult_cancelled(notify: Notify, consult: Consult) -> list[str]:
    """The consult was cancelled, so no answer will come: its waiting follow-ups are due
    `due_within` from now and their owners are told (nothing owed is lost)."""
    return _settle_waiting(notify, consult, "cancelled")


def _settle_waiting(notify: Notify, consult: Consult, why: str) -> list[str]:
    now, refs = notify.now, []
    for f in followups.waiting_on_answer(session=notify.session, consult_id=consult.id):
        f.answer_at = now
        if f.due_at is None:
            f.due_at = now + timedelta(seconds=f.due_within or 0)
            f.next_nudge_at = f.due_at
        tell_owner(notify, f, why, why, consult_ref=consult.ref)
        audit(
            notify.session, f, FollowUpStep.ANSWER_IN, "careloop", now, consult=consult.ref, why=why
        )
        refs.append(str(f.ref))
    return refs
