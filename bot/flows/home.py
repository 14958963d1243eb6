"""App Home for one person: gathers what waits on them (their open consults, and the
unassigned ones of the services they are on call for), what they asked, and for leads their
services' week at a glance, then renders the Home tab."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bot.domain.catalogue import Service
from bot.domain.lifecycle import Status
from bot.flows.consults.oncall import OnCall
from bot.flows.critical import active_recipients
from bot.flows.schedules import ScheduleBook
from bot.reports.glance import week_at_a_glance
from bot.slack.render.context import RenderContext
from bot.slack.render.critical import critical_home
from bot.slack.render.followups import followups_home
from bot.slack.render.home import MAX_ROWS, Duty, home_view
from storage import covers, critical, followups, repo


def build_home_view(
    user: str, *, session: Session, ctx: RenderContext, book: ScheduleBook | None = None
) -> dict[str, Any]:
    """The Home tab view for `user`, from the database as it is now."""
    # On-call follows the domain's clock (the book's), which the delivery clock may not be.
    now = book.now() if book else ctx.now
    on_call = OnCall(repo.on_call_overrides(session=session), now, book)
    serving = [s for s in ctx.catalogue.services if user in on_call.people(s)]
    on_call_for = [s.key for s in serving]
    consults = repo.open_for_user(session=session, user=user)
    waiting = [c for c in consults if c.assignee == user and c.status != Status.ANSWERED]
    # The tab shows the first MAX_ROWS and counts the rest: a service's backlog (thousands
    # of open consults in a surge) is counted in the database, not loaded row by row.
    waiting_total = len(waiting) + repo.count_unassigned_open(session=session, services=on_call_for)
    for key in on_call_for:
        if len(waiting) >= MAX_ROWS:
            break
        waiting += repo.unassigned_open(session=session, service=key, limit=MAX_ROWS)
    mine = [c for c in consults if c.requester == user]
    covering = covers.covered_requests(session, user)
    led = [s for s in ctx.catalogue.services if user in s.leads or user in ctx.catalogue.admins]
    glance = week_at_a_glance(session=session, services=led, ctx=ctx) if led else []
    pending = critical.unacknowledged(session=session)
    crit = critical_home(
        [r for r in pending if r.sender == user],
        [r for r in pending if user in active_recipients(r)],
        ctx,
    )
    duty = Duty(
        now=[(s.name, on_call.next_change(s)) for s in serving],
        next=_next_shift(user, ctx.catalogue.scheduled(), on_call, book),
    )
    owed = followups_home(followups.open_owned_by(session=session, user=user), ctx.now)
    return home_view(
        waiting=waiting[:MAX_ROWS],
        waiting_total=waiting_total,
        mine=mine,
        covering=covering,
        glance=glance,
        ctx=ctx,
        critical=crit,
        duty=duty,
        owed=owed,
    )


def _next_shift(
    user: str, services: list[Service], on_call: OnCall, book: ScheduleBook | None
) -> tuple[str, Any, Any] | None:
    """(service name, start, end) of `user`'s next scheduled shift, if any."""
    if book is None:
        return None
    found = [
        (shift.start, shift.end, service.name)
        for service in services
        for shift in book.shifts(service, on_call.now)
        if user in shift.people and shift.start > on_call.now
    ]
    if not found:
        return None
    start, end, name = min(found)
    return name, start, end
