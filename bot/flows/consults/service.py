"""`ConsultService`: what handlers call to open and change consults, composed of the parts
in this package (on-call roster, who may act, look-ups, opening, actions, replies, moves). It
only wires them together and forwards; the work is done in the parts."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bot.domain.catalogue import Catalogue, Service
from bot.domain.clock import Clock
from bot.domain.lifecycle import Action, Refused
from bot.domain.schedule import Standing
from bot.flows import shifts
from bot.flows.consults import refusals
from bot.flows.consults.actions import Actions, Outcome
from bot.flows.consults.context import Context
from bot.flows.consults.cover import Cover, CoverStatus
from bot.flows.consults.drafts import Draft
from bot.flows.consults.moves import Moves
from bot.flows.consults.oncall import OnCallRoster
from bot.flows.consults.opening import Opened, Opener
from bot.flows.consults.queries import Lookups
from bot.flows.consults.replies import Replies
from bot.flows.consults.roles import Permissions
from bot.flows.consults.timeline import Shown, Timelines
from bot.flows.outbox import Outbox
from bot.flows.schedules import ScheduleBook
from bot.slack.membership import ChannelMembers
from bot.slack.people import People
from storage.models import Consult


class ConsultService:
    """The consult flows, given their collaborators (catalogue, database, clock, outbox,
    and channel membership from Slack)."""

    def __init__(
        self,
        *,
        catalogue: Catalogue,
        sessions: sessionmaker[Session],
        clock: Clock,
        outbox: Outbox,
        members: ChannelMembers,
        schedules: ScheduleBook | None = None,
        people: People | None = None,
    ) -> None:
        self.ctx = Context(catalogue=catalogue, sessions=sessions, clock=clock, outbox=outbox)
        self.schedules = schedules
        self.roster = OnCallRoster(self.ctx, schedules)
        self.permissions = Permissions(catalogue, self.roster, members, sessions)
        self.lookups = Lookups(sessions)
        self.opener = Opener(self.ctx, self.roster)
        self.actions = Actions(self.ctx, self.permissions, self.lookups)
        self.replies = Replies(self.ctx, self.lookups)
        self.people = people
        self.covers = Cover(self.ctx, people)
        self.timelines = Timelines(self.ctx, self.permissions, self.lookups)
        self.moves = Moves(self.actions)

    def unit(self) -> AbstractContextManager[Session]:
        """One transaction; commits on success."""
        return self.ctx.unit()

    # ------------------------------------------------------------------ who may act
    def check(self, consult: Consult, user: str, action: Action) -> None:
        self.permissions.check(consult, user, action)

    def audit_refusal(self, *, user: str, action: str, reason: str, ref: str | None) -> None:
        refusals.audit_refusal(self.ctx, user=user, action=action, reason=reason, ref=ref)

    # ------------------------------------------------------------------ changes
    def open(self, draft: Draft, *, requester: str, origin_key: str | None) -> Opened:
        return self.opener.open(draft, requester=requester, origin_key=origin_key)

    def acknowledge(self, ref: str, *, actor: str, key: str | None = None) -> Outcome:
        return self.actions.acknowledge(ref, actor=actor, key=key)

    def answer(self, ref: str, *, actor: str, text: str, key: str | None = None) -> Outcome:
        return self.actions.answer(ref, actor=actor, text=text, key=key)

    def need_info(self, ref: str, *, actor: str, question: str, key: str | None = None) -> Outcome:
        return self.actions.need_info(ref, actor=actor, question=question, key=key)

    def handoff(
        self, ref: str, *, actor: str, to: str, note: str = "", key: str | None = None
    ) -> Outcome:
        return self.actions.handoff(ref, actor=actor, to=to, note=note, key=key)

    def handoff_all(self, *, actor: str, to: str, note: str = "") -> list[Outcome]:
        return self.actions.handoff_all(actor=actor, to=to, note=note)

    def handover(
        self, ref: str, *, actor: str, to: str, note: str = "", key: str | None = None
    ) -> Outcome:
        """The requester's side of `ref` to `to` (a person: asked of Slack first)."""
        problem = self.people.problem(to) if self.people else None
        if problem:
            raise Refused(problem)
        return self.actions.handover(ref, actor=actor, to=to, note=note, key=key)

    # ------------------------------------------------------------------ requester cover
    def cover_start(self, *, user: str, cover: str, key: str | None = None) -> str:
        return self.covers.start(user=user, cover=cover, key=key)

    def cover_stop(self, *, user: str, key: str | None = None) -> str:
        return self.covers.stop(user=user, key=key)

    def cover_status(self, *, user: str) -> CoverStatus:
        return self.covers.status(user=user)

    def close(self, ref: str, *, actor: str, key: str | None = None) -> Outcome:
        return self.actions.close(ref, actor=actor, key=key)

    def reopen(self, ref: str, *, actor: str, text: str = "", key: str | None = None) -> Outcome:
        return self.actions.reopen(ref, actor=actor, text=text, key=key)

    def cancel(self, ref: str, *, actor: str, reason: str = "", key: str | None = None) -> Outcome:
        return self.actions.cancel(ref, actor=actor, reason=reason, key=key)

    def feedback(
        self, ref: str, *, actor: str, helpful: bool, comment: str = "", key: str | None = None
    ) -> Outcome:
        return self.actions.feedback(ref, actor=actor, helpful=helpful, comment=comment, key=key)

    def snooze(self, ref: str, *, actor: str, duration: str, key: str | None = None) -> Outcome:
        return self.actions.snooze(ref, actor=actor, duration=duration, key=key)

    def transfer(
        self, ref: str, *, actor: str, to: str, reason: str, key: str | None = None
    ) -> Outcome:
        return self.moves.transfer(ref, actor=actor, to=to, reason=reason, key=key)

    def change_urgency(
        self, ref: str, *, actor: str, urgency: str, reason: str, key: str | None = None
    ) -> Outcome:
        return self.moves.change_urgency(ref, actor=actor, urgency=urgency, reason=reason, key=key)

    def set_on_call(
        self, *, service_key: str, actor: str, user: str, key: str | None = None, **ends: Any
    ) -> tuple[Service, datetime | None]:
        """Change who is on call; `ends` may give `length` (timedelta) or `until` (HH:MM)."""
        return self.roster.set(service_key=service_key, actor=actor, user=user, key=key, **ends)

    # ------------------------------------------------------------------ thread replies
    def record_reply(
        self, *, channel: str, thread_ts: str, user: str, ts: str, text: str
    ) -> Consult | None:
        return self.replies.record_reply(
            channel=channel, thread_ts=thread_ts, user=user, ts=ts, text=text
        )

    def check_requester_reply(self, consult: Consult, user: str) -> None:
        self.replies.check_requester_reply(consult, user)

    def requester_reply(self, ref: str, *, user: str, text: str, key: str) -> Outcome:
        return self.replies.requester_reply(ref, user=user, text=text, key=key)

    # ------------------------------------------------------------------ look-ups
    def get(self, ref: str) -> Consult:
        return self.lookups.get(ref)

    def get_by_id(self, consult_id: int) -> Consult | None:
        return self.lookups.get_by_id(consult_id)

    def by_ids(self, ids: list[int]) -> list[Consult]:
        return self.lookups.by_ids(ids)

    def for_user(self, user: str) -> list[Consult]:
        return self.lookups.for_user(user)

    def for_patient(self, patient: str) -> list[Consult]:
        return self.lookups.for_patient(patient)

    def latest_consultant_reply(self, consult: Consult) -> str:
        return self.lookups.latest_consultant_reply(consult)

    def need_info_question(self, consult: Consult) -> tuple[str | None, str]:
        return self.lookups.need_info_question(consult)

    def reload_schedules(self, *, actor: str) -> int:
        """`/consult oncall reload`: re-read the schedules (leads); how many failed."""
        if self.schedules is None:
            raise Refused(refusals.NO_SCHEDULES)
        return shifts.reload(ctx=self.ctx, book=self.schedules, roster=self.roster, actor=actor)

    def show(self, ref: str, *, user: str) -> Shown:
        """`/consult show <ref>`: the card and timeline, for those who may see it."""
        return self.timelines.show(ref, user=user)

    def on_call_table(self) -> list[Standing]:
        return self.roster.table()
