"""Opening a consult: the validated draft becomes a consult row with its clocks started,
stored in one atomic write with its audit event, its channel card and the requester's
confirmation, exactly once per Slack request."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from bot.domain import policy as sla
from bot.domain.lifecycle import Status
from bot.domain.text import patient_key
from bot.flows.consults.context import Context
from bot.flows.consults.drafts import Draft, Valid, validate
from bot.flows.consults.keys import request_key
from bot.flows.consults.oncall import OnCallRoster
from bot.flows.notify import opening_rows
from storage import creation, repo
from storage.models import Consult

log = logging.getLogger("careloop.consults")


@dataclass(frozen=True)
class Opened:
    """Result of opening a consult: the consult, whether it existed already, and the
    patient's other open consults."""

    consult: Consult
    duplicate: bool
    others: list[Consult]


@dataclass(frozen=True)
class Opener:
    """Opens consults, given their collaborators and the on-call roster."""

    ctx: Context
    roster: OnCallRoster

    def open(self, draft: Draft, *, requester: str, origin_key: str | None) -> Opened:
        """Store a new consult and queue its channel post and the requester's confirmation.

        `origin_key` (the Slack trigger or view id) makes a replayed or doubled request
        return the consult it already created instead of creating another.
        """
        origin_key = request_key(origin_key)
        valid = validate(self.ctx.catalogue, draft)
        try:
            consult = self._new_consult(valid, requester, origin_key)
            return self._insert(consult, prefix=valid.service.prefix)
        except IntegrityError:
            # The same request is being handled concurrently and won the unique key.
            with self.ctx.unit() as s:
                existing = repo.get_by_origin(session=s, origin_key=origin_key or "")
            if existing is None:
                raise
            return Opened(existing, True, [])

    def _new_consult(self, valid: Valid, requester: str, origin_key: str | None) -> Consult:
        """The consult row, not yet stored, its clocks running from now."""
        now = self.ctx.clock.now()
        service = valid.service
        ack_due, answer_due = sla.due_times(self.ctx.catalogue.policy(service, valid.urgency), now)
        return creation.new_consult(
            service=service.key,
            urgency=valid.urgency.value,
            patient=valid.patient,
            patient_key=patient_key(valid.patient),
            question=valid.question,
            intake=valid.intake,
            requester=requester,
            on_call=self.roster.cached().of(service),
            status=Status.OPEN.value,
            origin_key=origin_key,
            channel=service.channel,
            created_at=now,
            acknowledge_due_at=ack_due,
            answer_due_at=answer_due,
            next_nudge_at=ack_due,
            nudge_phase=sla.Phase.ACKNOWLEDGE.value,
        )

    def _insert(self, consult: Consult, *, prefix: str) -> Opened:
        # One atomic write (one statement on PostgreSQL): a known repeat (same trigger or
        # view) is answered before a number is taken. A create that fails after taking its
        # number (or a repeat racing the original) leaves a gap, never a duplicate.
        now = consult.created_at
        created = creation.create_consult(
            sessions=self.ctx.sessions,
            consult=consult,
            prefix=prefix,
            audit={
                "actor": consult.requester,
                "action": "created",
                "at": now,
                "details": {"service": consult.service, "urgency": consult.urgency},
            },
            messages=opening_rows(self.ctx.outbox, requester=consult.requester, now=now),
        )
        if created is None:
            with self.ctx.sessions() as s:
                found = repo.get_by_origin(session=s, origin_key=consult.origin_key or "")
            assert found is not None
            return Opened(found, True, [])
        # Both messages follow the card, which pacing may hold back in its channel.
        self.ctx.outbox.wake(behind=consult.channel)
        log.info("consult opened", extra={"ref": consult.ref, "service": consult.service})
        return Opened(created.consult, False, created.others)
