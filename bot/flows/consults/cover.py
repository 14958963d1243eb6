"""Requester cover (`/consult cover @colleague` … `/consult cover off`): while it is in
force, what CareLoop sends the requester goes to the covering clinician (decided at
delivery, `bot.flows.cover_routing`), who may act as the requester
(`roles.acts_as_requester`). Each change is one transaction: cover changes serialised
(`storage.covers.lock_changes`), the request's exactly-once key claimed, the cover row
written, audited (user ids only) and the covering clinician told by DM, with the list of
the requester's consults.

Rules (the issue leaves them open): nobody covers for themselves; one level, no chains —
someone who is covered cannot cover, and someone who covers cannot hand their own
messages on; only a person (not an app, not deactivated) can cover."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot.domain.lifecycle import Refused
from bot.domain.vocabulary import Template
from bot.flows.consults.context import Context
from bot.flows.consults.keys import request_key
from bot.flows.work import audit_change
from bot.slack.people import People
from storage import covers, repo
from storage.models import Consult

COVER_SELF = "You cannot cover for yourself: name the colleague who covers for you."


def _covered_cannot_cover(cover: str, by: str) -> str:
    return (
        f"<@{cover}> is away themselves (<@{by}> covers for them), and covers do not pass "
        "on: choose a colleague who is here."
    )


def _cover_cannot_leave(covering: list[str]) -> str:
    who = ", ".join(f"<@{u}>" for u in covering)
    return (
        f"You cover for {who}, and covers do not pass on: they must choose someone else "
        "(`/consult cover @colleague`) or end it (`/consult cover off`) before your own "
        "messages can go to a colleague."
    )


@dataclass(frozen=True)
class CoverStatus:
    """`/consult cover`: who covers for me (and since when), and whom I cover with the
    consults of theirs that are not done."""

    mine: tuple[str, datetime] | None
    covering: list[tuple[str, list[Consult]]]


@dataclass(frozen=True)
class Cover:
    """Starts, ends and shows requester covers."""

    ctx: Context
    people: People | None = None

    def start(self, *, user: str, cover: str, key: str | None = None) -> str:
        """`cover` covers for `user` from now (replacing any cover in force); the text
        for `user`."""
        if cover == user:
            raise Refused(COVER_SELF)
        problem = self.people.problem(cover) if self.people else None
        if problem:
            raise Refused(problem)
        done = f":busts_in_silhouette: <@{cover}> covers for you now"
        with self.ctx.unit() as s:
            covers.lock_changes(s)
            if not self._claim(s, key):
                return done + "."
            away = covers.cover_for(s, cover)
            if away:
                raise Refused(_covered_cannot_cover(cover, away))
            covering = covers.covered_by(s, user)
            if covering:
                raise Refused(_cover_cannot_leave(covering))
            current = covers.cover_for(s, user)
            if current == cover:
                return f"<@{cover}> already covers for you. `/consult cover off` to end it."
            now = self.ctx.clock.now()
            ids = [c.id for c in covers.requested_not_done(s, user)]
            if current:
                self._end(s, user, now, ids, replaced_by=cover)
            covers.start(s, user=user, cover=cover, at=now)
            audit_change(s, "cover_on", actor=user, now=now, details={"cover": cover})
            params = {"for": user, "ids": ids}
            self.ctx.notify(s, now).dm_user(cover, Template.COVER_STARTED, params)
        return (
            f"{done}: your acknowledgements, replies, questions, answers and overdue notices "
            f"go to them (they have the list of your {len(ids)} open consult(s)) until "
            "`/consult cover off`."
        )

    def stop(self, *, user: str, key: str | None = None) -> str:
        """End the cover of `user`; the text for `user`."""
        with self.ctx.unit() as s:
            covers.lock_changes(s)
            if not self._claim(s, key):
                return "Your cover is ended."
            now = self.ctx.clock.now()
            ids = [c.id for c in covers.requested_not_done(s, user)]
            previous = self._end(s, user, now, ids)
        if previous is None:
            return "Nobody covers for you, so there is nothing to end."
        return (
            f":busts_in_silhouette: <@{previous}> no longer covers for you: your consults' "
            "messages come to you again."
        )

    def status(self, *, user: str) -> CoverStatus:
        """Who covers for `user`, and whom `user` covers."""
        with self.ctx.unit() as s:
            row = covers.in_force(s, user)
            covering = [
                (u, list(covers.requested_not_done(s, u))) for u in covers.covered_by(s, user)
            ]
        mine = (row.cover, row.started_at) if row is not None else None
        return CoverStatus(mine=mine, covering=covering)

    def _end(
        self, s: Session, user: str, now: datetime, ids: list[int], *, replaced_by: str = ""
    ) -> str | None:
        """End `user`'s cover in force: audited, the clinician who covered told."""
        previous = covers.end(s, user=user, at=now)
        if previous is None:
            return None
        details = {"cover": previous} | ({"replaced_by": replaced_by} if replaced_by else {})
        audit_change(s, "cover_off", actor=user, now=now, details=details)
        params = {"for": user, "ids": ids}
        self.ctx.notify(s, now).dm_user(previous, Template.COVER_ENDED, params)
        return previous

    def _claim(self, s: Session, key: str | None) -> bool:
        """Claim the request's exactly-once key; False when it was handled before."""
        key = request_key(key)
        return not key or repo.claim_key(session=s, key=key, at=self.ctx.clock.now())
