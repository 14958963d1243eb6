"""`/consult show <ref>`: who may see a consult's card and timeline (its requester or
whoever covers for them — `Permissions.covers_requester` — and the service's consultants
and leads), and the timeline read for them: every hop with its holder and
duration, the nudges and escalations from the audit trail, the answer. Each showing is
audited (who saw which consult; no patient data in the audit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.domain.hops import TimelineEvent, TimelineRow, timeline
from bot.domain.lifecycle import Refused, Role
from bot.flows import hops
from bot.flows.consults.context import Context
from bot.flows.consults.queries import Lookups
from bot.flows.consults.roles import Permissions
from storage import repo
from storage.models import Consult

# Audit events the timeline shows besides the hops.
TIMELINE_EVENTS = frozenset({"nudged", "escalated", "requester_reminded"})
SHOW_EVENT = "show"


def not_yours(ref: str) -> str:
    """The refusal shown to someone who may not see a consult's timeline."""
    return (
        f"Only the requester of {ref} (or whoever covers for them) and the service's "
        "consultants and leads can see its timeline."
    )


@dataclass(frozen=True)
class Shown:
    """What `/consult show` displays: the consult, its hops with durations, its events."""

    consult: Consult
    rows: list[TimelineRow]
    events: list[TimelineEvent]
    now: datetime


@dataclass(frozen=True)
class Timelines:
    """Reads a consult's timeline for someone allowed to see it."""

    ctx: Context
    permissions: Permissions
    lookups: Lookups

    def check_may_see(self, consult: Consult, user: str) -> None:
        """Refused unless `user` is the requester (or acts as them), or one of the
        service's consultants or leads (channel members count, as for acting on it)."""
        if self.permissions.covers_requester(consult, user, session=None):
            return
        roles = self.permissions.roles(consult, user, need_consultant=True)
        if roles & {Role.CONSULTANT, Role.LEAD}:
            return
        raise Refused(not_yours(consult.ref))

    def show(self, ref: str, *, user: str) -> Shown:
        """The consult `ref`'s card data and timeline for `user`, the showing audited; or
        Refused (unknown reference, or not theirs to see)."""
        found = self.lookups.get(ref)
        # Membership may be asked of Slack: before the transaction, like the actions.
        self.check_may_see(found, user)
        with self.ctx.unit() as s:
            consult = repo.get_consult(session=s, consult_id=found.id)
            assert consult is not None
            now = self.ctx.clock.now()
            finished = hops.hops_of(s, consult)
            events = [
                TimelineEvent(e.at, e.action, tuple((e.details or {}).get("targets") or ()))
                for e in repo.audit_for(session=s, consult_id=consult.id)
                if e.action in TIMELINE_EVENTS
            ]
            repo.add_audit(session=s, consult_id=consult.id, actor=user, action=SHOW_EVENT, at=now)
        rows = timeline(finished, hops.running_hop(consult), now)
        return Shown(consult=consult, rows=rows, events=events, now=now)
