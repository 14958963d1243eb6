"""Moving a consult under way: a **transfer** to another service (the wrong one was asked)
and a **change of urgency**. Both are consult actions through `Actions._act` (role, lock,
exactly-once key, transition and audit in one transaction).

A transfer gives the consult a new reference in the new service (`CARD-7`), as if it had
been asked there: the old one (`RAD-42`) keeps finding it (`storage.transfers`), the old
card says where it went and loses its buttons, a new card is posted in the new service's
channel, the requester is told, and the new service's clocks start from the transfer.
An urgency change re-computes both deadlines from the consult's arrival at its service
(creation, or the transfer) in the new urgency's policy, and re-plans the next nudge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain import policy as sla
from bot.domain.catalogue import Service
from bot.domain.commands import BY_VERB, Verb
from bot.domain.lifecycle import Action, Refused, Status
from bot.domain.text import clean, escape
from bot.domain.vocabulary import URGENCIES, Kind, Template
from bot.flows import hops
from bot.flows.consults import clocks, refusals
from bot.flows.consults.actions import Actions, Outcome
from bot.flows.consults.drafts import NOTE_MAX
from bot.flows.consults.keys import request_key
from bot.flows.notify import Notify
from storage import creation, repo, transfers
from storage.models import Consult
from storage.models_transfers import ConsultTransfer

TRANSFER_USAGE = BY_VERB[Verb.TRANSFER].usage
URGENCY_USAGE = BY_VERB[Verb.URGENCY].usage


@dataclass(frozen=True)
class Moves:
    """Transfers and urgency changes, done through the consult actions' `_act`."""

    actions: Actions

    def transfer(
        self, ref: str, *, actor: str, to: str, reason: str, key: str | None = None
    ) -> Outcome:
        """Send the consult to service `to` (key, alias or prefix) because of `reason`."""
        ctx = self.actions.ctx
        target = ctx.catalogue.service(clean(to, max_length=64))
        if target is None:
            raise Refused(refusals.unknown_service_in_draft(to, ctx.catalogue))
        why = clean(reason, max_length=NOTE_MAX)
        if not why:
            raise Refused(f"Say why it goes to {escape(target.name)}: `{TRANSFER_USAGE}`")

        def attempt() -> Outcome:
            current = self.actions.lookups.get(ref)
            if current.service == target.key:
                raise Refused(f"{current.ref} is already with {escape(target.name)}.")

            def apply(c: Consult, now: datetime, notify: Notify) -> None:
                _unchanged(c, c.service == current.service)
                hops.pin(c)  # the old service's queue hop ends here, charged to it
                self._move(c, target, actor, why, now, notify)

            audit = {"from_service": current.service, "to_service": target.key}
            return self.actions._act(
                ref, actor, Action.TRANSFER, apply, key=key, audit_details=audit
            )

        return self._once(ref, key, attempt)

    def change_urgency(
        self, ref: str, *, actor: str, urgency: str, reason: str, key: str | None = None
    ) -> Outcome:
        """Give the consult urgency `urgency` because of `reason`: new deadlines, a
        re-planned nudge, the card redrawn, a thread note and the requester told."""
        wanted = clean(urgency, max_length=16).lower()
        if wanted not in URGENCIES:
            typed = escape(clean(urgency, max_length=16))
            raise Refused(f"'{typed}' is not an urgency: choose {', '.join(URGENCIES)}.")
        why = clean(reason, max_length=NOTE_MAX)
        if not why:
            raise Refused(f"Say why the urgency changes: `{URGENCY_USAGE}`")

        def attempt() -> Outcome:
            current = self.actions.lookups.get(ref)
            if current.urgency == wanted:
                raise Refused(f"{current.ref} is already {wanted}.")

            def apply(c: Consult, now: datetime, notify: Notify) -> None:
                _unchanged(c, c.urgency == current.urgency)
                params = {"by": actor, "from": c.urgency, "to": wanted, "reason": why}
                self._redue(c, wanted, now)
                notify.thread_note(c, Template.URGENCY_THREAD, params)
                if actor != c.requester:
                    notify.dm_requester(c, Template.URGENCY_CHANGED, params)
                elif c.assignee:
                    notify.dm_about(c, c.assignee, Template.URGENCY_CHANGED, params)

            audit = {"from_urgency": current.urgency, "to_urgency": wanted}
            return self.actions._act(
                ref, actor, Action.URGENCY, apply, key=key, audit_details=audit
            )

        return self._once(ref, key, attempt)

    def _once(self, ref: str, key: str | None, attempt: Callable[[], Outcome]) -> Outcome:
        """`attempt`, except that a retried request whose first attempt already moved the
        consult (so the actor may no longer act on it, or it is already where it was
        sent) is answered as the harmless repeat it is."""
        try:
            return attempt()
        except Refused:
            key = request_key(key)
            if key:
                with self.actions.ctx.unit() as s:
                    handled = repo.get_key(session=s, key=key) is not None
                if handled:
                    return Outcome(self.actions.lookups.get(ref), changed=False)
            raise

    def _move(
        self, c: Consult, target: Service, actor: str, why: str, now: datetime, notify: Notify
    ) -> None:
        """The transfer's changes to the locked row, its record and its messages."""
        s = notify.session
        old_ts = c.channel_ts
        if old_ts is None and transfers.card_post_in_flight(session=s, consult_id=c.id):
            raise Refused(f"{c.ref}'s card is being posted just now; try again in a moment.")
        transfers.readdress_queued(
            session=s, consult_id=c.id, channel=c.channel, ts=old_ts, drop={Template.NUDGE}
        )
        clocks.end_waiting(self.actions.ctx.catalogue, c, now)
        seq = creation.next_seq(session=s, service=target.key)
        moved = ConsultTransfer(
            consult_id=c.id, at=now, actor=actor, from_service=c.service,
            to_service=target.key, from_ref=c.ref, to_ref=f"{target.prefix}-{seq}",
            arrived_at=c.transferred_at or c.created_at,
        )  # fmt: skip
        transfers.add_transfer(session=s, transfer=moved)
        card = {
            "channel": c.channel, transfers.LEFT_CARD: old_ts, "from_ref": c.ref,
            "to_ref": moved.to_ref, "from_service": c.service, "to_service": target.key,
            "by": actor, "reason": why, "at": now.isoformat(),
        }  # fmt: skip
        c.service, c.seq, c.ref, c.channel = target.key, seq, moved.to_ref, target.channel
        c.channel_ts = c.permalink = None
        c.transferred_from, c.former_ref = moved.from_service, moved.from_ref
        c.transferred_by, c.transferred_at, c.transfer_reason = actor, now, why
        c.assignee = c.acknowledged_at = None
        c.on_call = self.actions.permissions.roster.cached(s).of(target)
        c.snoozed_until = None
        self._restart_clocks(c, target, now)
        self._queue_moved(c, card, notify)

    def _restart_clocks(self, c: Consult, target: Service, now: datetime) -> None:
        """The new service's acknowledgement clock starts now; the ladder starts over."""
        policy = self.actions.ctx.catalogue.policy(target, c.urgency)
        c.acknowledge_due_at, c.answer_due_at = sla.due_times(policy, now)
        c.nudge_phase = sla.Phase.ACKNOWLEDGE.value
        c.next_nudge_at = c.acknowledge_due_at
        c.nudge_level = c.nudges_at_level = 0

    def _queue_moved(self, c: Consult, card: dict[str, str | None], notify: Notify) -> None:
        """The new card in the new service's channel (recorded as the consult's card when
        posted), then the old card's last update (where it went, linked to the new card, no
        buttons), then the requester's message: the outbox sends a consult's messages after
        its card, so both show the new card's link."""
        outbox, s, now = notify.outbox, notify.session, notify.now
        outbox.add(s, kind=Kind.POST, template=Template.CARD, now=now, consult_id=c.id)
        if card[transfers.LEFT_CARD]:
            outbox.add(
                s, kind=Kind.UPDATE, template=Template.TRANSFERRED_CARD, now=now,
                consult_id=c.id, channel=card["channel"], params=card,
            )  # fmt: skip
        notify.dm_requester(c, Template.TRANSFERRED, card)

    def _redue(self, c: Consult, urgency: str, now: datetime) -> None:
        """New deadlines for `urgency` and the next nudge planned from them."""
        policy = self.actions.ctx.catalogue.policy(c.service, urgency)
        c.urgency = urgency
        start = c.transferred_at or c.created_at
        waited = timedelta(seconds=c.waiting_seconds or 0)
        c.acknowledge_due_at, c.answer_due_at = sla.due_times_since(policy, start, waited)
        due = {
            sla.Phase.ACKNOWLEDGE.value: c.acknowledge_due_at,
            sla.Phase.ANSWER.value: c.answer_due_at,
        }.get(c.nudge_phase or "")
        if due is None or Status(c.status) is Status.WAITING:
            return  # the requester's reminders keep their rhythm
        c.next_nudge_at = max(due, now)
        if c.snoozed_until and c.snoozed_until > c.next_nudge_at:
            c.next_nudge_at = c.snoozed_until
        c.nudge_level = c.nudges_at_level = 0


def _unchanged(c: Consult, same: bool) -> None:
    """Refused when the consult moved between the look and the lock (a concurrent move)."""
    if not same:
        raise Refused(f"{c.ref} was changed just now; look at it again.")
