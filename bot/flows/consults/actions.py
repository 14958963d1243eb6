"""What people do to a consult once it exists: acknowledge, answer, ask the requester
(need-info), hand off, hand over (the requester's side), close, reopen, cancel, rate and
snooze. Each is one unit of work
through `Actions._act`: check the actor's role, lock the row, honour the exactly-once key,
apply the transition, make the action's own changes and queue its messages, then redraw
the card."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from bot.domain import policy as sla
from bot.domain.durations import parse_duration
from bot.domain.lifecycle import Action, Refused, Status
from bot.domain.text import clean, normalize_ref
from bot.domain.vocabulary import Template
from bot.flows import hops
from bot.flows.consults import clocks, refusals
from bot.flows.consults.context import Context
from bot.flows.consults.drafts import NOTE_MAX, QUESTION_MAX
from bot.flows.consults.keys import request_key
from bot.flows.consults.queries import Lookups
from bot.flows.consults.roles import Permissions
from bot.flows.followup_owner import consult_answered, consult_cancelled
from bot.flows.notify import Notify
from bot.flows.work import Audit, apply_transition
from storage import press, repo
from storage.models import Consult

log = logging.getLogger("careloop.consults")

SNOOZE_MAX = timedelta(hours=24)

# An action's own changes to the locked row, and the messages it queues.
Apply = Callable[[Consult, datetime, Notify], None]


@dataclass(frozen=True)
class Outcome:
    """Result of an action on a consult; `changed` is False for a harmless repeat."""

    consult: Consult
    changed: bool = True
    message: str = ""


def _tell(
    notify: Notify, c: Consult, thread: Template, dm: Template, params: dict[str, Any]
) -> None:
    """Record a step in the consult's thread and tell the requester about it."""
    notify.thread_note(c, thread, params)
    notify.dm_requester(c, dm, params)


def _tell_handed_off(
    notify: Notify, consults: list[Consult], *, actor: str, to: str, note: str
) -> None:
    """Tell `to` which consults they took over (one message), and each requester."""
    params = {"from": actor, "ids": [c.id for c in consults], "note": note}
    notify.dm_user(to, Template.HANDOFF_RECEIVED, params)
    for c in consults:
        notify.dm_requester(c, Template.HANDED_OFF, {"to": to})


@dataclass(frozen=True)
class Actions:
    """The consult actions, given their collaborators, who may act, and the look-ups."""

    ctx: Context
    permissions: Permissions
    lookups: Lookups

    def _act(
        self,
        ref: str,
        actor: str,
        action: Action,
        apply: Apply,
        *,
        key: str | None = None,
        audit_details: dict[str, Any] | Callable[[Consult], dict[str, Any]] | None = None,
        repeat_ok: Callable[[Consult], bool] | None = None,
        followups: bool = False,
    ) -> Outcome:
        """Check, transition, apply and audit one action on one consult, exactly once.

        One transaction, few round trips (a button press at a peak is the hot path): the
        row is read once, locked, and the key claimed in the same statement on PostgreSQL;
        the role is checked on it (channel membership, when asked of Slack, is cached); and
        the changes go out in one statement on PostgreSQL (`storage.press`: the row's
        UPDATE, the audit event, the outbox and the hop), in one flush at commit elsewhere
        or when the action wrote more than that. `audit_details` may be a function of the locked row, read before the
        change. `followups`: the action settles the follow-ups waiting on the consult's
        answer (the locked read then also asks whether any wait)."""
        key = request_key(key)
        asked = self.permissions.ask_first(ref, actor, action)
        with press.unit(self.ctx.sessions) as s:
            # The key first: a replay of an action that took the actor's role away (a
            # hand-over) finds it done rather than refused. A refusal rolls the claim back.
            consult, claimed = self._locked(s, ref, key, followups=followups)
            if not claimed:
                return Outcome(consult, changed=False)
            self.permissions.check_role(consult, actor, action, session=s, asked=asked)
            if repeat_ok and repeat_ok(consult):
                return Outcome(consult, changed=False)
            now = self.ctx.clock.now()
            details = audit_details(consult) if callable(audit_details) else audit_details
            with s.no_autoflush:
                press.hold(s)
                apply_transition(s, consult, action, Audit(actor, now, details=details))
                notify = self.ctx.notify(s, now)
                apply(consult, now, notify)
                hops.settle(s, consult, now)
                notify.card_update(consult.id)
                press.write(s, consult)
        log.info("consult %s", action.value, extra={"ref": consult.ref, "actor": actor})
        return Outcome(consult)

    def _locked(
        self, s: Session, ref: str, key: str | None, *, followups: bool = False
    ) -> tuple[Consult, bool]:
        """The consult `ref` names, its row locked, and whether `key` was claimed now (True
        without a key); Refused naming the reference when there is no such consult."""
        normal = normalize_ref(ref)
        if normal is None:
            raise Refused(refusals.not_a_reference(ref))
        now = self.ctx.clock.now()
        consult, claimed = press.lock_and_claim(
            session=s, ref=normal, key=key, at=now, followups=followups
        )
        if consult is None:
            raise Refused(refusals.no_such_consult(normal))
        return consult, claimed

    def acknowledge(self, ref: str, *, actor: str, key: str | None = None) -> Outcome:
        """The actor takes ownership; the requester is told."""

        def apply(c: Consult, now: datetime, notify: Notify) -> None:
            c.assignee = actor
            c.acknowledged_at = now
            clocks.start_answer_clock(c, now)
            # No thread note: the card update shows who acknowledged and when.
            notify.dm_requester(c, Template.ACKNOWLEDGED, {"by": actor})

        def repeat_ok(c: Consult) -> bool:
            return c.assignee == actor and c.status in (Status.ACKNOWLEDGED, Status.WAITING)

        return self._act(ref, actor, Action.ACKNOWLEDGE, apply, key=key, repeat_ok=repeat_ok)

    def answer(self, ref: str, *, actor: str, text: str, key: str | None = None) -> Outcome:
        """Record the answer; post it in the thread and send it to the requester."""
        answer = clean(text)
        if not answer:
            raise Refused(refusals.NO_ANSWER)
        if len(answer) > QUESTION_MAX:
            raise Refused(refusals.too_long("answer", QUESTION_MAX))

        def apply(c: Consult, now: datetime, notify: Notify) -> None:
            clocks.end_waiting(self.ctx.catalogue, c, now)
            clocks.take_ownership(c, actor, now)
            c.assignee = actor  # whoever answers owns the answer (and any follow-up)
            if c.answered_at is None:
                c.answered_at = now
            c.answer = answer
            clocks.stop_clocks(c)
            params = {"by": actor, "text": answer}
            _tell(notify, c, Template.ANSWER_THREAD, Template.ANSWERED, params)
            consult_answered(notify, c)  # follow-ups waiting on this answer: owners told

        return self._act(ref, actor, Action.ANSWER, apply, key=key, followups=True)

    def need_info(self, ref: str, *, actor: str, question: str, key: str | None = None) -> Outcome:
        """Ask the requester something; the consultant's answer clock pauses."""
        text = clean(question)
        if not text:
            raise Refused(refusals.NO_NEED_INFO_QUESTION)

        def apply(c: Consult, now: datetime, notify: Notify) -> None:
            clocks.take_ownership(c, actor, now)
            clocks.wait_on_requester(c, clocks.policy_of(self.ctx.catalogue, c), now)
            params = {"by": actor, "text": text}
            _tell(notify, c, Template.NEED_INFO_THREAD, Template.NEED_INFO, params)

        return self._act(ref, actor, Action.NEED_INFO, apply, key=key)

    def handoff(
        self, ref: str, *, actor: str, to: str, note: str = "", key: str | None = None
    ) -> Outcome:
        """Give one consult to another consultant, with a note on status and next step."""
        outcomes = self._handoff([ref], actor=actor, to=to, note=note, key=key)
        return outcomes[0]

    def handoff_all(self, *, actor: str, to: str, note: str = "") -> list[Outcome]:
        """Shift change: give every open consult assigned to `actor` to `to`."""
        with self.ctx.unit() as s:
            refs = [c.ref for c in repo.assigned_open(session=s, user=actor)]
        if not refs:
            return []
        return self._handoff(refs, actor=actor, to=to, note=note, key=None)

    def _handoff(
        self, refs: list[str], *, actor: str, to: str, note: str, key: str | None
    ) -> list[Outcome]:
        if to == actor:
            raise Refused(refusals.HANDOFF_TO_SELF)
        text = clean(note, max_length=NOTE_MAX)
        # One consult (the card's Hand off form): its direct messages are queued in the
        # action's own transaction; several (shift change): one list for `to` at the end.
        single = len(refs) == 1

        def apply(c: Consult, now: datetime, notify: Notify) -> None:
            previous = c.assignee or c.on_call or actor
            c.assignee = to
            c.handoff_count = (c.handoff_count or 0) + 1
            if c.nudge_phase:
                c.nudge_level, c.nudges_at_level = 0, 0
            params = {"from": previous, "to": to, "note": text}
            notify.thread_note(c, Template.HANDOFF_THREAD, params)
            if single:
                _tell_handed_off(notify, [c], actor=actor, to=to, note=text)

        outcomes = [
            self._act(ref, actor, Action.HANDOFF, apply, key=key, audit_details={"to": to})
            for ref in refs
        ]
        changed = [o.consult for o in outcomes if o.changed]
        if changed and not single:
            with self.ctx.unit() as s:
                notify = self.ctx.notify(s, self.ctx.clock.now())
                _tell_handed_off(notify, changed, actor=actor, to=to, note=text)
        return outcomes

    def handover(
        self, ref: str, *, actor: str, to: str, note: str = "", key: str | None = None
    ) -> Outcome:
        """The requester's side of one consult moves to `to` for good, with a note: the
        thread records it, the new requester gets the consult and its buttons, the previous
        one is told. The note is free text: in the thread and the DMs, never the audit."""
        text = clean(note, max_length=NOTE_MAX)

        def apply(c: Consult, now: datetime, notify: Notify) -> None:
            previous = c.requester
            c.requester = to
            params = {"from": previous, "to": to, "by": actor, "note": text}
            notify.thread_note(c, Template.HANDOVER_THREAD, params)
            notify.dm_requester(c, Template.HANDOVER_RECEIVED, params)
            notify.dm_about(c, previous, Template.HANDOVER_SENT, params)

        def repeat_ok(c: Consult) -> bool:
            return c.requester == to  # a repeat, or already theirs

        return self._act(
            ref, actor, Action.HANDOVER, apply, key=key, repeat_ok=repeat_ok,
            audit_details=lambda c: {"requester_from": c.requester, "requester_to": to},
        )  # fmt: skip

    def close(self, ref: str, *, actor: str, key: str | None = None) -> Outcome:
        """The requester confirms the loop is closed."""

        def apply(c: Consult, now: datetime, notify: Notify) -> None:
            c.closed_at = now
            clocks.stop_clocks(c)
            notify.thread_note(c, Template.CLOSED_THREAD, {"by": actor})

        def repeat_ok(c: Consult) -> bool:
            return c.status == Status.CLOSED

        return self._act(ref, actor, Action.CLOSE, apply, key=key, repeat_ok=repeat_ok)

    def reopen(self, ref: str, *, actor: str, text: str = "", key: str | None = None) -> Outcome:
        """A follow-up on an answered consult: back to the consultant who answered it."""
        follow_up = clean(text)

        def apply(c: Consult, now: datetime, notify: Notify) -> None:
            policy = clocks.policy_of(self.ctx.catalogue, c)
            c.reopened_count = (c.reopened_count or 0) + 1
            c.answer_due_at = sla.add_time(policy, now, policy.answer_within)
            clocks.start_answer_clock(c, now)
            params = {"by": actor, "text": follow_up, "assignee": c.assignee}
            notify.thread_note(c, Template.REOPENED_THREAD, params)
            if c.assignee:
                params = {"by": actor, "text": follow_up}
                notify.dm_about(c, c.assignee, Template.REOPENED, params)

        return self._act(ref, actor, Action.REOPEN, apply, key=key)

    def cancel(self, ref: str, *, actor: str, reason: str = "", key: str | None = None) -> Outcome:
        """The requester no longer needs it; all nudges stop."""
        why = clean(reason, max_length=NOTE_MAX)

        def apply(c: Consult, now: datetime, notify: Notify) -> None:
            c.cancelled_at = now
            clocks.end_waiting(self.ctx.catalogue, c, now)
            clocks.stop_clocks(c)
            notify.thread_note(c, Template.CANCELLED_THREAD, {"by": actor, "text": why})
            consult_cancelled(notify, c)  # follow-ups waiting on its answer: due from now
            if c.assignee and c.assignee != actor:
                notify.dm_about(c, c.assignee, Template.CANCELLED, {"by": actor})

        def repeat_ok(c: Consult) -> bool:
            return c.status == Status.CANCELLED

        return self._act(
            ref, actor, Action.CANCEL, apply, key=key, repeat_ok=repeat_ok, followups=True
        )

    def feedback(
        self, ref: str, *, actor: str, helpful: bool, comment: str = "", key: str | None = None
    ) -> Outcome:
        """The requester rates the answer (Helpful / Not helpful, optional comment)."""
        text = clean(comment, max_length=NOTE_MAX) or None

        def apply(c: Consult, now: datetime, notify: Notify) -> None:
            c.feedback_helpful = helpful
            if text:
                c.feedback_comment = text
            c.feedback_at = now

        def repeat_ok(c: Consult) -> bool:
            # A second tap of the same rating (double-click) records nothing new.
            return c.feedback_helpful is helpful and not text

        return self._act(
            ref,
            actor,
            Action.FEEDBACK,
            apply,
            key=key,
            audit_details={"helpful": helpful},
            repeat_ok=repeat_ok,
        )

    def snooze(self, ref: str, *, actor: str, duration: str, key: str | None = None) -> Outcome:
        """Hold a consult's reminders for a while (at most 24 h); recorded in its thread."""
        try:
            length = parse_duration(duration)
        except ValueError as exc:
            raise Refused(refusals.not_a_duration(exc)) from None
        if length > SNOOZE_MAX:
            raise Refused(refusals.SNOOZE_TOO_LONG)

        def apply(c: Consult, now: datetime, notify: Notify) -> None:
            c.snoozed_until = now + length
            if c.next_nudge_at is not None and c.next_nudge_at < c.snoozed_until:
                c.next_nudge_at = c.snoozed_until
            params = {"by": actor, "until": c.snoozed_until.isoformat()}
            notify.thread_note(c, Template.SNOOZED_THREAD, params)

        audit = {"seconds": int(length.total_seconds())}
        return self._act(ref, actor, Action.SNOOZE, apply, key=key, audit_details=audit)
