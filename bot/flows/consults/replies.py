"""Replies in a consult's thread, and the requester's reply from the Reply form: each is
stored once (by its `ts`) and audited; the requester's (or, while someone covers for the
requester, the cover's) resumes a consult waiting on them, anyone else's is relayed to the
requester."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.domain.lifecycle import OPEN_STATES, Action, Refused, Status
from bot.domain.text import clean, is_slack_id
from bot.domain.vocabulary import Template
from bot.flows import hops
from bot.flows.consults import clocks, refusals
from bot.flows.consults.actions import Outcome
from bot.flows.consults.context import Context
from bot.flows.consults.drafts import QUESTION_MAX
from bot.flows.consults.keys import reply_ts
from bot.flows.consults.queries import Lookups
from bot.flows.consults.roles import acts_as_requester
from bot.flows.notify import Notify
from bot.flows.work import Audit, apply_transition
from storage import repo
from storage.models import Consult, Reply

log = logging.getLogger("careloop.consults")

# A reply by anyone but the requester reaches the requester while the consult is in these.
RELAYED_STATES = OPEN_STATES | {Status.ANSWERED}


@dataclass(frozen=True)
class Replies:
    """Records replies, given their collaborators and the look-ups."""

    ctx: Context
    lookups: Lookups

    def record_reply(
        self, *, channel: str, thread_ts: str, user: str, ts: str, text: str
    ) -> Consult | None:
        """Store a reply in a consult's thread; relay it to the requester, or resume a
        consult that was waiting on the requester. Repeated deliveries are ignored, and so
        is an event whose ids cannot be Slack's (`is_slack_id`): it is no consult's reply."""
        if not all(is_slack_id(v) for v in (channel, thread_ts, user, ts)):
            log.info("ignored a message event whose channel, user or timestamps are malformed")
            return None
        with self.ctx.unit() as s:
            consult = repo.get_by_message(session=s, channel=channel, ts=thread_ts)
            if consult is None:
                return None
            consult = repo.get_consult(session=s, consult_id=consult.id, lock=True)
            assert consult is not None
            self._store(self.ctx.notify(s, self.ctx.clock.now()), consult, user, ts, text)
        return consult

    def check_requester_reply(self, consult: Consult, user: str) -> None:
        """Refused unless `user` may answer through the Reply form: the requester or whoever
        covers for them, as only their thread replies count as the requester's
        (`record_reply`)."""
        if user == consult.requester:
            return
        with self.ctx.unit() as s:
            if acts_as_requester(s, consult, user):
                return
        raise Refused(refusals.only_requester_replies(consult.ref))

    def requester_reply(self, ref: str, *, user: str, text: str, key: str) -> Outcome:
        """The requester answers from the Reply form on their need-info message (they may
        not see the service channel, or not want to look for the thread).

        The reply is recorded exactly as the requester's reply in the thread would be
        (stored as theirs, audited, and resuming the consult if it waits on them; a late
        reply changes no status) and posted in the thread by the bot, where the consultant
        asked. `key` (the form's view id) is the reply's `ts`, its exactly-once key: a
        repeated submission records and posts nothing (`changed` False). `message` is the
        confirmation for the requester.
        """
        body = clean(text)
        if not body:
            raise Refused(refusals.NO_REPLY)
        if len(body) > QUESTION_MAX:
            raise Refused(refusals.too_long("reply", QUESTION_MAX))
        current = self.lookups.get(ref)
        self.check_requester_reply(current, user)
        with self.ctx.unit() as s:
            consult = repo.get_by_ref(session=s, ref=current.ref, lock=True)
            assert consult is not None
            notify = self.ctx.notify(s, self.ctx.clock.now())
            waiting = consult.status == Status.WAITING
            if not self._store(notify, consult, user, reply_ts(key), body):
                return Outcome(consult, changed=False)
            params = {"by": user, "text": body, "resumed": waiting}
            if user != consult.requester:
                params["covering_for"] = consult.requester
            notify.thread_note(consult, Template.REQUESTER_REPLY_THREAD, params)
        log.info("requester replied from the form", extra={"ref": consult.ref})
        message = f":white_check_mark: Your reply on *{consult.ref}* is posted in its thread"
        message += "; the answer clock is running again." if waiting else "."
        return Outcome(consult, message=message)

    def _store(self, notify: Notify, consult: Consult, user: str, ts: str, text: str) -> bool:
        """A reply's effects (the consult row locked): stored once per `ts`, audited; the
        requester's resumes a consult waiting on them, anyone else's is relayed to the
        requester. False, with no effect, when that `ts` was already stored."""
        by_requester = acts_as_requester(notify.session, consult, user)
        body, now = clean(text), notify.now
        reply = Reply(
            consult_id=consult.id, user=user, ts=ts, at=now, by_requester=by_requester, text=body
        )
        if not repo.add_reply(session=notify.session, reply=reply):
            return False
        if by_requester:
            repo.add_audit(
                session=notify.session,
                consult_id=consult.id,
                actor=user,
                action="requester_reply",
                at=now,
            )
            if consult.status == Status.WAITING:
                self._resume(notify, consult, user)
            return True
        if consult.first_reply_at is None:
            consult.first_reply_at = now
        repo.add_audit(
            session=notify.session, consult_id=consult.id, actor=user, action="reply", at=now
        )
        if consult.status in RELAYED_STATES:
            notify.dm_requester(consult, Template.REPLY_RELAY, {"by": user, "text": body, "ts": ts})
        return True

    def _resume(self, notify: Notify, c: Consult, user: str) -> None:
        """The requester answered the consultant's question: the answer clock runs again."""
        apply_transition(notify.session, c, Action.INFO_GIVEN, Audit(user, notify.now))
        clocks.end_waiting(self.ctx.catalogue, c, notify.now)
        clocks.start_answer_clock(c, notify.now)
        hops.settle(notify.session, c, notify.now)
        notify.card_update(c.id)
        if c.assignee:
            notify.dm_about(c, c.assignee, Template.INFO_GIVEN)
