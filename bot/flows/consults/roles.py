"""Who may act on a consult: the roles a user holds for it (requester; lead or admin;
consultant as named on-call, backup, assignee or current on-call, else as a member of the
service channel, asked of Slack through the injected `members`), checked against the
lifecycle's table of who may do what."""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain.catalogue import Catalogue, Service
from bot.domain.lifecycle import CONSULTANT_ACTIONS, Action, Role, check_allowed, next_status
from bot.flows.consults.oncall import OnCallRoster
from bot.slack.membership import ChannelMembers
from storage.models import Consult


@dataclass(frozen=True)
class Permissions:
    """Answers "may this user do this to this consult?", or raises Refused saying why not."""

    catalogue: Catalogue
    roster: OnCallRoster
    members: ChannelMembers

    def roles(self, consult: Consult, user: str, *, need_consultant: bool = True) -> set[Role]:
        """The roles `user` holds for `consult`; channel membership (a Slack call) is asked
        only when `need_consultant` and no cheaper rule made them a consultant."""
        service = self.catalogue.service_by_key(consult.service)
        roles: set[Role] = set()
        if user == consult.requester:
            roles.add(Role.REQUESTER)
        if user in service.leads or user in self.catalogue.admins:
            roles.update({Role.LEAD, Role.CONSULTANT})
        named = {service.on_call, service.backup, consult.assignee, consult.on_call}
        if user in named or user in self.roster.cached().people(service):
            roles.add(Role.CONSULTANT)
        if need_consultant and Role.CONSULTANT not in roles and user != consult.requester:
            if self.members.is_member(service.channel, user):
                roles.add(Role.CONSULTANT)
        return roles

    def speaks_for(self, service: Service, user: str, *, ask_slack: bool = True) -> bool:
        """Whether `user` is one of `service`'s consultants: its on-call (named or current),
        backup or a lead, else (with `ask_slack`) a member of its channel."""
        named = {service.on_call, service.backup, *service.leads}
        if user in named or user == self.roster.cached().of(service):
            return True
        return bool(ask_slack and self.members.is_member(service.channel, user))

    def check(self, consult: Consult, user: str, action: Action) -> None:
        """Refused unless `user` may perform `action` on `consult` in its current state."""
        self.check_role(consult, user, action)
        next_status(consult.ref, consult.status, action)

    def check_role(self, consult: Consult, user: str, action: Action) -> None:
        """Refused unless `user` holds a role that may perform `action` on `consult`."""
        need_consultant = action in CONSULTANT_ACTIONS
        check_allowed(
            consult.ref, action, self.roles(consult, user, need_consultant=need_consultant)
        )
