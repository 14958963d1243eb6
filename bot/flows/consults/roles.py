"""Who may act on a consult: the roles a user holds for it (requester, or whoever covers
for the requester now; owner, the assignee; lead or admin; consultant as named on-call,
backup, assignee or current on-call, else as a member of the service channel, asked of
Slack through the injected `members`), checked against the lifecycle's table of who may do
what."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from bot.domain.catalogue import Catalogue, Service
from bot.domain.lifecycle import (
    ALLOWED,
    CONSULTANT_ACTIONS,
    Action,
    Role,
    check_allowed,
    next_status,
)
from bot.flows.consults.oncall import OnCallRoster
from bot.slack.membership import ChannelMembers
from storage import covers
from storage.db import unit_of_work
from storage.models import Consult

# Service channel -> its members as Slack said before a transaction (None: Slack could not).
Asked = dict[str, frozenset[str] | None]


def acts_as_requester(session: Session, consult: Consult, user: str) -> bool:
    """Whether `user` may act as `consult`'s requester: they requested it, or they cover
    for its requester now (`/consult cover`). The one rule for "the requester or whoever
    covers for them" (permissions, the Reply form, thread replies)."""
    if user == consult.requester:
        return True
    return bool(user) and covers.cover_for(session, consult.requester) == user


@dataclass(frozen=True)
class Permissions:
    """Answers "may this user do this to this consult?", or raises Refused saying why not."""

    catalogue: Catalogue
    roster: OnCallRoster
    members: ChannelMembers
    # Where a check outside a transaction reads who covers for the requester.
    sessions: sessionmaker[Session] | None = None

    def roles(
        self, consult: Consult, user: str, *, need_consultant: bool = True,
        session: Session | None = None, asked: Asked | None = None,
    ) -> set[Role]:  # fmt: skip
        """The roles `user` holds for `consult`; channel membership (a Slack call) is asked
        only when `need_consultant` and no cheaper rule made them a consultant, and not at
        all when `asked` (see `ask_first`) has the channel's answer. Inside a transaction,
        pass its `session`: the on-call table is then read in it, when its cache is stale,
        rather than on a second connection."""
        service = self.catalogue.service_by_key(consult.service)
        roles: set[Role] = set()
        if user == consult.requester:
            roles.add(Role.REQUESTER)
        if consult.assignee and user == consult.assignee:
            roles.add(Role.OWNER)
        if user in service.leads or user in self.catalogue.admins:
            roles.update({Role.LEAD, Role.CONSULTANT})
        named = {service.on_call, service.backup, consult.assignee, consult.on_call}
        if user in named or user in self.roster.cached(session).people(service):
            roles.add(Role.CONSULTANT)
        if need_consultant and Role.CONSULTANT not in roles and user != consult.requester:
            if asked is not None and service.channel in asked:
                members = asked[service.channel]
                member = members is not None and user in members
            else:
                member = bool(self.members.is_member(service.channel, user))
            if member:
                roles.add(Role.CONSULTANT)
        return roles

    def speaks_for(self, service: Service, user: str, *, ask_slack: bool = True) -> bool:
        """Whether `user` is one of `service`'s consultants: its on-call (named or current),
        backup or a lead, else (with `ask_slack`) a member of its channel."""
        named = {service.on_call, service.backup, *service.leads}
        if user in named or user in self.roster.cached().people(service):
            return True
        return bool(ask_slack and self.members.is_member(service.channel, user))

    def ask_first(self, ref: str, user: str, action: Action) -> Asked:
        """Before any row is locked: the service channel's members, asked of Slack (or its
        cache) when a role check of `action` on `ref` may need them (the service is the
        one the reference's prefix names), so no Slack call waits under a row lock."""
        service = self.catalogue.service(ref.partition("-")[0])
        if action not in CONSULTANT_ACTIONS or service is None:
            return {}
        named = {service.on_call, service.backup, *service.leads, *self.catalogue.admins}
        if user in named:
            return {}
        return {service.channel: self.members.members(service.channel)}

    def check(self, consult: Consult, user: str, action: Action) -> None:
        """Refused unless `user` may perform `action` on `consult` in its current state."""
        self.check_role(consult, user, action)
        next_status(consult.ref, consult.status, action)

    def check_role(
        self, consult: Consult, user: str, action: Action, *, session: Session | None = None,
        asked: Asked | None = None,
    ) -> None:  # fmt: skip
        """Refused unless `user` holds a role that may perform `action` on `consult`. Who
        covers for the requester is read only when nothing else allows the action and the
        requester may take it (never for a consultant's press: no extra round trip)."""
        need = action in CONSULTANT_ACTIONS
        roles = self.roles(consult, user, need_consultant=need, session=session, asked=asked)
        allowed = ALLOWED[action]
        if Role.REQUESTER in allowed and not roles & allowed:
            if self.covers_requester(consult, user, session=session):
                roles.add(Role.REQUESTER)
        check_allowed(consult.ref, action, roles)

    def covers_requester(self, consult: Consult, user: str, *, session: Session | None) -> bool:
        """`acts_as_requester`, in `session` or (outside a transaction) in a short one."""
        if session is not None:
            return acts_as_requester(session, consult, user)
        if self.sessions is None:
            return user == consult.requester
        with unit_of_work(self.sessions) as s:
            return acts_as_requester(s, consult, user)
