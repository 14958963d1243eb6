"""Critical results, closed loop: a consultant pushes a critical finding to the responsible
clinician (`send`), who confirms receipt with a read-back (`acknowledge`) or says it is not
their patient and forwards it (`forward`). Each step stores the row, its audit event and
its direct messages in one transaction (stored first, exactly once); the re-notification
sweep is `bot.flows.critical_sweep`.

Audit events of critical results have `consult_id` NULL; their `details` carry the result's
id (`critical`) and reference (`ref`). Patient, finding, callback and read-back live only
in the `critical_results` row and in message bodies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.domain.catalogue import Service
from bot.domain.lifecycle import Refused
from bot.domain.text import escape
from bot.domain.vocabulary import CriticalStep, Template
from bot.flows.consults.context import Context
from bot.flows.consults.roles import Permissions
from bot.flows.notify import Notify
from bot.reports.model import iso_z
from storage import critical, repo
from storage.db import unit_of_work
from storage.models_critical import CriticalResult

WHO_MAY = (
    "Only a consultant of the service (its on-call, backup, a lead, or a member of its "
    "channel) may send a critical result."
)


@dataclass(frozen=True)
class CriticalDraft:
    """What the sender typed or filled in; `service` empty: the one they belong to."""

    to: str
    patient: str
    finding: str
    service: str = ""
    callback: str = ""
    consult_id: int | None = None


@dataclass(frozen=True)
class Sent:
    """A stored critical result (detached), and whether the request had already sent it."""

    result: CriticalResult
    duplicate: bool


def audit(
    s: Session, r: CriticalResult, step: CriticalStep, actor: str, at: datetime, **more: Any
) -> None:
    """One audit event of a critical result (consult_id NULL, its id and ref in details)."""
    details = {"critical": r.id, "ref": r.ref, **more}
    repo.add_audit(session=s, consult_id=None, actor=actor, action=step, at=at, details=details)


def notify_recipient(notify: Notify, r: CriticalResult, user: str, key: str, **params: Any) -> None:
    """The direct message with the finding and the two buttons, once under `key`."""
    once = notify.once(f"critical:{r.id}:{key}:{user}")
    once.dm_user(user, Template.CRITICAL_RESULT, {"critical": r.id, **params})


def reach(r: CriticalResult, user: str, via: str, at: datetime, **more: Any) -> None:
    """Add `user` to the people `r` reached (a new list: JSON columns track assignment)."""
    r.recipients = [*(r.recipients or []), {"user": user, "at": iso_z(at), "via": via, **more}]


class CriticalService:
    """The critical-result flows, given their collaborators."""

    def __init__(self, ctx: Context, permissions: Permissions) -> None:
        self.catalogue, self.sessions = ctx.catalogue, ctx.sessions
        self.clock, self.outbox = ctx.clock, ctx.outbox
        self.permissions = permissions

    # ------------------------------------------------------------------ who may send
    def services_of(self, user: str) -> list[Service]:
        """The services `user` may send critical results for: those naming them first
        (no Slack call), else those whose channel they are a member of."""
        named = [
            s
            for s in self.catalogue.services
            if self.permissions.speaks_for(s, user, ask_slack=False)
        ]
        if named:
            return named
        return [s for s in self.catalogue.services if self.permissions.speaks_for(s, user)]

    def service_for(self, name: str, user: str) -> Service:
        """The service the result is sent for; Refused when unknown, ambiguous or not theirs."""
        if name:
            service = self.catalogue.service(name)
            if service is None:
                raise Refused(f"There is no service called '{escape(name[:40])}'. {WHO_MAY}")
            if not self.permissions.speaks_for(service, user):
                raise Refused(f"You are not a consultant of {escape(service.name)}. {WHO_MAY}")
            return service
        mine = self.services_of(user)
        if not mine:
            raise Refused(WHO_MAY)
        if len(mine) > 1:
            keys = ", ".join(s.key for s in mine)
            raise Refused(
                f"You belong to several services ({keys}): say which one, e.g. `/consult critical {mine[0].key} @clinician <patient>: <finding>`."
            )
        return mine[0]

    # ------------------------------------------------------------------ sending
    def send(self, draft: CriticalDraft, *, sender: str, origin_key: str | None) -> Sent:
        """Store the result and its first direct message; a replayed request (same origin
        key) returns what it created."""
        service = self.service_for(draft.service, sender)
        if not draft.to or not draft.patient.strip() or not draft.finding.strip():
            raise Refused("Name the clinician, the patient and the finding.")
        settings = self.catalogue.critical_for(service)
        now = self.clock.now()
        with unit_of_work(self.sessions) as s:
            if origin_key and (found := critical.by_origin(session=s, origin_key=origin_key)):
                s.expunge(found)
                return Sent(found, duplicate=True)
            r = CriticalResult(
                service=service.key, sender=sender, recipient=draft.to, recipients=[],
                patient=draft.patient.strip()[:200], finding=draft.finding.strip(),
                callback=draft.callback.strip()[:200] or None, consult_id=draft.consult_id,
                origin_key=origin_key, sent_at=now, delivered={}, forwarded_count=0,
                acknowledge_within=int(settings.acknowledge_within.total_seconds()),
                next_renotify_at=now + settings.renotify_every, renotify_count=0,
            )  # fmt: skip
            reach(r, draft.to, "sent", now)
            if not critical.create(session=s, row=r):
                return self.send(draft, sender=sender, origin_key=origin_key)  # lost a race
            audit(s, r, CriticalStep.SENT, sender, now, to=draft.to, service=service.key)
            notify_recipient(Notify(self.outbox, s, now), r, draft.to, "sent")
            s.flush()
            s.expunge(r)
        return Sent(r, duplicate=False)

    # ------------------------------------------------------------------ the recipient
    def get(self, ref: str, user: str) -> CriticalResult:
        """The result `ref`, for someone it reached (detached); Refused otherwise."""
        with self.sessions() as s:
            r = critical.by_ref(session=s, ref=ref)
            self._check_reached(r, ref, user)
            assert r is not None
            s.expunge(r)
            return r

    def _locked(self, s: Session, ref: str, actor: str) -> CriticalResult:
        """The result's row, locked, for someone it reached; Refused otherwise."""
        r = critical.by_ref(session=s, ref=ref, lock=True)
        self._check_reached(r, ref, actor)
        assert r is not None
        return r

    @staticmethod
    def _check_reached(r: CriticalResult | None, ref: str, user: str) -> None:
        if r is None:
            raise Refused(f"{ref} is not a critical result I know.")
        if user not in r.reached():
            raise Refused(
                f"{ref} was not sent to you; only the clinicians it reached may act on it."
            )

    def acknowledge(self, ref: str, *, actor: str, read_back: str, key: str | None) -> bool:
        """Record receipt with the read-back, once; tell the sender. False: already done."""
        if not read_back.strip():
            raise Refused("Write the read-back: the finding and your plan, in your own words.")
        now = self.clock.now()
        with unit_of_work(self.sessions) as s:
            r = self._locked(s, ref, actor)
            if r.acknowledged_at is not None:
                return False
            if key and not repo.claim_key(session=s, key=key, at=now):
                return False
            r.acknowledged_at, r.acknowledged_by = now, actor
            r.read_back, r.next_renotify_at = read_back.strip(), None
            minutes = round((now - r.sent_at).total_seconds() / 60, 1)
            audit(
                s,
                r,
                CriticalStep.ACKNOWLEDGED,
                actor,
                now,
                minutes=minutes,
                read_back_chars=len(r.read_back),
            )
            once = Notify(self.outbox, s, now).once(f"critical:{r.id}:acknowledged")
            once.dm_user(r.sender, Template.CRITICAL_ACKNOWLEDGED, {"critical": r.id})
        return True

    def forward(self, ref: str, *, actor: str, to: str, reason: str, key: str | None) -> bool:
        """Not my patient: `to` gets the same message, the sender is told; the clock keeps
        running from the first send. False: this request was handled before."""
        if not to or to == actor:
            raise Refused("Choose the clinician it should go to (someone other than you).")
        now = self.clock.now()
        with unit_of_work(self.sessions) as s:
            r = self._locked(s, ref, actor)
            if r.acknowledged_at is not None:
                raise Refused(f"{ref} was already acknowledged by <@{r.acknowledged_by}>.")
            if key and not repo.claim_key(session=s, key=key, at=now):
                return False
            r.recipient, r.forwarded_count = to, (r.forwarded_count or 0) + 1
            reach(r, to, "forwarded", now, by=actor, reason=reason.strip()[:300])
            audit(s, r, CriticalStep.FORWARDED, actor, now, to=to)
            notify = Notify(self.outbox, s, now)
            n = r.forwarded_count
            notify_recipient(
                notify, r, to, f"forwarded{n}", forwarded_by=actor, reason=reason[:300]
            )
            params = {"critical": r.id, "by": actor, "to": to, "reason": reason[:300]}
            notify.once(f"critical:{r.id}:forwarded{n}").dm_user(
                r.sender, Template.CRITICAL_FORWARDED, params
            )
        return True

    # ------------------------------------------------------------------ App Home
    def open_for(self, user: str) -> tuple[list[str], list[str]]:
        """References only (no patient data): the unacknowledged results `user` sent, and
        those waiting for `user`'s acknowledgement."""
        with self.sessions() as s:
            rows: Sequence[CriticalResult] = critical.unacknowledged(session=s)
            sent = [str(r.ref) for r in rows if r.sender == user]
            waiting = [str(r.ref) for r in rows if user in active_recipients(r)]
        return sent, waiting


def active_recipients(r: CriticalResult) -> list[str]:
    """Those who should still act: everyone reached, except who forwarded it on since they
    last received it (A forwards to B, B back to A: A is reminded again, B is not)."""
    active: dict[str, bool] = {}
    for x in r.recipients or []:
        if x["via"] == "forwarded":
            active[str(x.get("by"))] = False
        active[str(x["user"])] = True
    return [user for user, yes in active.items() if yes]
