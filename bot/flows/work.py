"""What the units of work share: the one way a consult changes status (`apply_transition`:
the new status, a version bump and the audit event, together), and the audit of a change
that is about no single consult (`audit_change`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.domain.lifecycle import Action, Transition, next_status
from storage import repo
from storage.models import Consult


@dataclass(frozen=True)
class Audit:
    """Who made a change and when; the audit event's name (the action's, unless given) and
    details beyond the statuses before and after."""

    actor: str
    now: datetime
    event: str | None = None
    details: dict[str, Any] | None = None


def apply_transition(
    session: Session, consult: Consult, action: Action, audit: Audit
) -> Transition:
    """Move `consult` (its row locked by the caller) to the status `action` leads to, bump
    its version and audit it with the statuses before and after; Refused, with nothing
    changed, when not allowed now."""
    transition = next_status(consult.ref, consult.status, action)
    consult.status = transition.after.value
    consult.version += 1
    repo.add_audit(
        session=session,
        consult_id=consult.id,
        actor=audit.actor,
        action=audit.event or action.value,
        at=audit.now,
        details={"from": transition.before.value, "to": transition.after.value}
        | (audit.details or {}),
    )
    return transition


def audit_change(
    session: Session, event: str, *, actor: str, now: datetime, details: dict[str, Any]
) -> None:
    """Audit a change that is about no single consult (an on-call change, a purge)."""
    repo.add_audit(
        session=session, consult_id=None, actor=actor, action=event, at=now, details=details
    )
