"""The SLA clocks as columns of a consult row: whose turn it is (`nudge_phase`), when the
sweep next looks at it, and the answer deadline paused while waiting on the requester.
Each function changes the row it is given (locked by the caller) and nothing else."""

from __future__ import annotations

from datetime import datetime

from bot.domain import policy as sla
from bot.domain.catalogue import Catalogue, UrgencyPolicy
from storage.models import Consult


def policy_of(catalogue: Catalogue, consult: Consult) -> UrgencyPolicy:
    """The clocks that apply to `consult` (its service's, for its urgency)."""
    return catalogue.policy(catalogue.service_by_key(consult.service), consult.urgency)


def take_ownership(consult: Consult, actor: str, now: datetime) -> None:
    """Answering or asking implies acknowledging: the first to act owns the consult."""
    if consult.acknowledged_at is None:
        consult.acknowledged_at = now
    if consult.assignee is None:
        consult.assignee = actor
    if consult.first_reply_at is None:
        consult.first_reply_at = now


def start_answer_clock(consult: Consult, now: datetime) -> None:
    """The consultant owes an answer: nudge from its deadline (at once if that has passed)."""
    consult.nudge_phase = sla.Phase.ANSWER
    consult.nudge_level = 0
    consult.nudges_at_level = 0
    due = consult.answer_due_at or now
    consult.next_nudge_at = due if due > now else now


def wait_on_requester(consult: Consult, clocks: UrgencyPolicy, now: datetime) -> None:
    """The consultant asked the requester something: remind the requester, not them."""
    consult.waiting_since = now
    consult.nudge_phase = sla.Phase.REQUESTER
    consult.nudge_level = 0
    consult.nudges_at_level = 0
    consult.next_nudge_at = now + clocks.nudge_every


def end_waiting(catalogue: Catalogue, consult: Consult, now: datetime) -> None:
    """The wait on the requester, if any, is over: count it, push the answer deadline back."""
    if consult.waiting_since is None:
        return
    clocks = policy_of(catalogue, consult)
    consult.waiting_seconds = (consult.waiting_seconds or 0) + int(
        max((now - consult.waiting_since).total_seconds(), 0)
    )
    if consult.answer_due_at is not None:
        consult.answer_due_at = sla.resume_answer_due(
            clocks, consult.answer_due_at, consult.waiting_since, now
        )
    consult.waiting_since = None


def stop_clocks(consult: Consult) -> None:
    """Nobody owes anything any more (answered, closed, cancelled): no more nudges."""
    consult.next_nudge_at = None
    consult.nudge_phase = None
