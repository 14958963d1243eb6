"""The consult lifecycle as explicit transitions, and who may perform each action.

open → acknowledged → (waiting on requester ↔ acknowledged) → answered → closed;
cancelled from any open state; reopened from answered when the requester has a follow-up.
Pure Python: no Slack payloads, no SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    WAITING = "waiting"
    ANSWERED = "answered"
    CLOSED = "closed"
    CANCELLED = "cancelled"


OPEN_STATES = frozenset({Status.OPEN, Status.ACKNOWLEDGED, Status.WAITING})
STATUS_LABELS = {
    Status.OPEN: "Open",
    Status.ACKNOWLEDGED: "Acknowledged",
    Status.WAITING: "Waiting on requester",
    Status.ANSWERED: "Answered",
    Status.CLOSED: "Closed",
    Status.CANCELLED: "Cancelled",
}


class Action(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    NEED_INFO = "need_info"
    INFO_GIVEN = "info_given"
    ANSWER = "answer"
    HANDOFF = "handoff"
    CLOSE = "close"
    REOPEN = "reopen"
    CANCEL = "cancel"
    FEEDBACK = "feedback"
    SNOOZE = "snooze"
    HANDOVER = "handover"  # the requester's side of a consult moves to a colleague
    TRANSFER = "transfer"  # to another service (the wrong one was asked)
    URGENCY = "urgency"  # the urgency changes; the clocks are re-computed


class Role(StrEnum):
    REQUESTER = "requester"
    CONSULTANT = "consultant"  # member of the service channel, on-call, backup or lead
    LEAD = "lead"
    OWNER = "owner"  # the consultant the consult is assigned to


TRANSITIONS: dict[Action, dict[Status, Status]] = {
    Action.ACKNOWLEDGE: {Status.OPEN: Status.ACKNOWLEDGED},
    Action.NEED_INFO: {Status.OPEN: Status.WAITING, Status.ACKNOWLEDGED: Status.WAITING},
    Action.INFO_GIVEN: {Status.WAITING: Status.ACKNOWLEDGED},
    Action.ANSWER: {
        Status.OPEN: Status.ANSWERED,
        Status.ACKNOWLEDGED: Status.ANSWERED,
        Status.WAITING: Status.ANSWERED,
    },
    Action.HANDOFF: {s: s for s in OPEN_STATES},
    Action.CLOSE: {Status.ANSWERED: Status.CLOSED},
    Action.REOPEN: {Status.ANSWERED: Status.ACKNOWLEDGED},
    Action.CANCEL: {s: Status.CANCELLED for s in OPEN_STATES},
    Action.FEEDBACK: {Status.ANSWERED: Status.ANSWERED, Status.CLOSED: Status.CLOSED},
    Action.SNOOZE: {s: s for s in OPEN_STATES},
    Action.HANDOVER: {s: s for s in (*OPEN_STATES, Status.ANSWERED)},
    Action.TRANSFER: {s: Status.OPEN for s in OPEN_STATES},
    Action.URGENCY: {s: s for s in OPEN_STATES},
}

# Who may do what. Leads may also close, reopen, cancel and hand over. Whoever covers for
# the requester holds the requester's role (`bot.flows.consults.roles.acts_as_requester`).
ALLOWED: dict[Action, frozenset[Role]] = {
    Action.ACKNOWLEDGE: frozenset({Role.CONSULTANT}),
    Action.NEED_INFO: frozenset({Role.CONSULTANT}),
    Action.ANSWER: frozenset({Role.CONSULTANT}),
    Action.HANDOFF: frozenset({Role.CONSULTANT}),
    Action.INFO_GIVEN: frozenset({Role.REQUESTER}),
    Action.CLOSE: frozenset({Role.REQUESTER, Role.LEAD}),
    Action.REOPEN: frozenset({Role.REQUESTER, Role.LEAD}),
    Action.CANCEL: frozenset({Role.REQUESTER, Role.LEAD}),
    Action.FEEDBACK: frozenset({Role.REQUESTER}),
    Action.SNOOZE: frozenset({Role.CONSULTANT}),
    Action.HANDOVER: frozenset({Role.REQUESTER, Role.LEAD}),
    Action.TRANSFER: frozenset({Role.CONSULTANT}),
    Action.URGENCY: frozenset({Role.REQUESTER, Role.OWNER, Role.LEAD}),
}
# The actions only consultants may take: checking them may mean asking Slack whether the
# user is a member of the service channel, and the requester may never take them.
CONSULTANT_ACTIONS = frozenset(a for a, roles in ALLOWED.items() if roles == {Role.CONSULTANT})

_VERBS = {
    Action.ACKNOWLEDGE: "acknowledged",
    Action.NEED_INFO: "asked about",
    Action.INFO_GIVEN: "resumed",
    Action.ANSWER: "answered",
    Action.HANDOFF: "handed off",
    Action.CLOSE: "closed",
    Action.REOPEN: "reopened",
    Action.CANCEL: "cancelled",
    Action.FEEDBACK: "rated",
    Action.SNOOZE: "snoozed",
    Action.HANDOVER: "handed over",
    Action.TRANSFER: "transferred",
    Action.URGENCY: "given another urgency",
}
# How a refusal names an action whose word is not a verb.
_DO = {Action.URGENCY: "change the urgency of"}


class Refused(Exception):
    """An action that is not allowed; the message is shown to the person who tried it."""


@dataclass(frozen=True)
class Transition:
    """The outcome of applying an action to a status."""

    action: Action
    before: Status
    after: Status


def next_status(ref: str, status: Status | str, action: Action) -> Transition:
    """Apply `action` to a consult in `status`, or raise Refused saying why not."""
    current = Status(status)
    target = TRANSITIONS[action].get(current)
    if target is None:
        raise Refused(_not_now(ref, current, action))
    return Transition(action=action, before=current, after=target)


def _not_now(ref: str, status: Status, action: Action) -> str:
    label = STATUS_LABELS[status].lower()
    if action is Action.ACKNOWLEDGE and status in (Status.ACKNOWLEDGED, Status.WAITING):
        return f"{ref} is already acknowledged."
    if action is Action.CLOSE and status in OPEN_STATES:
        return f"{ref} has not been answered yet; use cancel if it is no longer needed."
    if action is Action.REOPEN and status in OPEN_STATES:
        return f"{ref} is still open; reply in its thread to add a follow-up."
    if action is Action.FEEDBACK:
        return f"{ref} has not been answered yet, so it cannot be rated."
    return f"{ref} is {label}, so it cannot be {_VERBS[action]}."


def check_allowed(ref: str, action: Action, roles: set[Role]) -> None:
    """Raise Refused unless one of `roles` may perform `action`."""
    if Role.REQUESTER in roles and action in CONSULTANT_ACTIONS:
        raise Refused(f"You requested {ref}, so you cannot {_do(action)} it.")
    if roles & ALLOWED[action]:
        return
    who = {
        Role.CONSULTANT: "the service's consultants",
        Role.REQUESTER: "the requester",
        Role.LEAD: "the service's leads",
        Role.OWNER: "the consultant who owns it",
    }
    allowed = " or ".join(who[r] for r in sorted(ALLOWED[action], key=str))
    raise Refused(f"Only {allowed} can {_do(action)} {ref}.")


def _do(action: Action) -> str:
    """The action as a verb in a refusal: 'hand off', 'change the urgency of'."""
    return _DO.get(action, action.value.replace("_", " "))
