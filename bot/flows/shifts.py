"""The schedule jobs (every process runs them; keys make each message happen once):

- at each change of shift, consults still waiting for acknowledgement move to the incoming
  on-call, who gets one message listing them (the change is claimed as a processed key
  `shift:<service>:<moment>` in the same transaction, so two processes cannot both do it);
- `handoff_reminder` before a shift ends, the outgoing consultant who still owns open
  consults gets one message with a "Hand off to …" button;
- a stretch within `coverage_warning` where nobody is scheduled is told to the leads once;
- `refresh` re-reads the schedules and tells the leads once about a file that fails."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.domain.catalogue import Service
from bot.domain.lifecycle import Refused
from bot.domain.schedule import Shift, changes, gaps
from bot.domain.vocabulary import Template
from bot.flows.consults.context import Context
from bot.flows.consults.oncall import OnCall, OnCallRoster
from bot.flows.schedules import ScheduleBook
from bot.flows.work import audit_change
from storage import repo

log = logging.getLogger("careloop.shifts")

# A change of shift older than this is not acted on (the first run after a long outage).
LOOK_BACK = timedelta(days=1)
ONE_TICK = timedelta(microseconds=1)


@dataclass
class ShiftRound:
    """What one round did, for logs and tests."""

    changed: list[str] = field(default_factory=list)  # service keys whose shift changed
    reminded: int = 0
    gaps: int = 0


def watch_shifts(*, ctx: Context, roster: OnCallRoster) -> ShiftRound:
    """One round over every scheduled service; one service's failure spares the others."""
    result = ShiftRound()
    for service in ctx.catalogue.scheduled():
        try:
            with ctx.unit() as s:
                on_call = roster.current(s)
                made = _change_shift(ctx, s, service, on_call)
            if made:
                _seen(on_call.book, made, service, "made")
                result.changed.append(service.key)
            with ctx.unit() as s:
                result.reminded += _remind(ctx, s, service, on_call)
            with ctx.unit() as s:
                result.gaps += _warn_gaps(ctx, s, service, on_call)
        except Exception:
            log.exception("shift round failed", extra={"service": service.key})
    if result.changed:
        roster.forget()
    return result


def _last_change(on_call: OnCall, service: Service) -> datetime | None:
    """The latest moment (within LOOK_BACK) where who is on call for `service` changed."""
    book = on_call.book
    now = on_call.now
    moments = changes(book.shifts(service, now)) if book else []
    override = on_call.overrides.get(service.key)
    if override and override[1] is not None:
        moments.append(override[1])
    for moment in sorted((m for m in moments if now - LOOK_BACK <= m <= now), reverse=True):
        if on_call.at(moment - ONE_TICK).people(service) != on_call.at(moment).people(service):
            return moment
    return None


def _seen(book: ScheduleBook | None, key: str, service: Service, status: str) -> None:
    """Remember (and log, once per process and change) a change made or found made."""
    if book is not None:
        book.seen.add(key)
    log.info("shift change", extra={"service": service.key, "event": "shift", "status": status})


def _change_shift(ctx: Context, s: Session, service: Service, on_call: OnCall) -> str | None:
    """Move the waiting consults to the incoming on-call and tell them, once per change;
    the change's key when this process made it."""
    moment = _last_change(on_call, service)
    if moment is None:
        return None
    now = on_call.now
    key = f"shift:{service.key}:{moment.isoformat()}"
    if on_call.book is not None and key in on_call.book.seen:
        return None
    if not repo.claim_key(session=s, key=key, at=now):
        _seen(on_call.book, key, service, "found made")
        return None
    # Marked seen after the commit (`watch_shifts`): a rolled-back change is tried again.
    people = on_call.people(service)
    moved = repo.move_unowned_to(session=s, service=service.key, user=people[0])
    notify = ctx.notify(s, now)
    redraw = set(moved)
    if len(people) > 1 or len(on_call.at(moment - ONE_TICK).people(service)) > 1:
        # Cards name everyone on call: redraw those whose on-call stayed but gained or lost
        # a colleague (overlapping shifts).
        redraw.update(c.id for c in repo.unassigned_open(session=s, service=service.key))
    for consult_id in sorted(redraw):
        notify.card_update(consult_id)
    until = on_call.next_change(service)
    details = {"service": service.key, "at": moment.isoformat(), "to": list(people)}
    audit_change(
        s, "shift_changed", actor="schedule", now=now, details=details | {"consults": moved}
    )
    params = {"service": service.key, "ids": moved, "until": until.isoformat() if until else None}
    for person in people:
        notify.once(f"{key}:{person}").dm_user(person, Template.SHIFT_STARTED, params)
    return key


def _remind(ctx: Context, s: Session, service: Service, on_call: OnCall) -> int:
    """`handoff_reminder` before the shift ends: remind whoever leaves and still owns consults."""
    end = on_call.next_change(service)
    now = on_call.now
    if end is None or end - now > ctx.catalogue.handoff_reminder:
        return 0
    incoming = on_call.at(end).people(service)
    sent = 0
    for person in on_call.people(service):
        if person in incoming:
            continue
        owned = [c.id for c in repo.assigned_open_in(session=s, user=person, service=service.key)]
        if not owned:
            continue
        params = {"service": service.key, "ids": owned, "to": incoming[0], "end": end.isoformat()}
        key = f"handoff-remind:{service.key}:{end.isoformat()}:{person}"
        ctx.notify(s, now).once(key).dm_user(person, Template.HANDOFF_REMINDER, params)
        sent += 1
    return sent


def _warn_gaps(ctx: Context, s: Session, service: Service, on_call: OnCall) -> int:
    """Tell the leads, once per gap, of a stretch ahead where nobody is scheduled."""
    if on_call.book is None or not on_call.book.has(service):
        return 0
    now = on_call.now
    found = on_call.book.shifts(service, now)
    start, horizon = now - LOOK_BACK, now + ctx.catalogue.coverage_warning
    sent = 0
    for a, b in gaps(found, start, horizon):
        if b <= now:
            continue
        end = _gap_end(found, a, b, horizon)
        name = a.isoformat() if a > start else (end.isoformat() if end else now.date().isoformat())
        params = {
            "service": service.key,
            "start": max(a, now).isoformat(),
            "end": end.isoformat() if end else None,
            "fallback": on_call.at(max(a, now)).fallback(service)[0],
            "unnamed": sorted(
                {x.unresolved for x in found if x.unresolved and x.start < b and x.end > a}
            ),
        }
        for lead in service.leads or ctx.catalogue.admins:
            key = f"gap:{service.key}:{name}:{lead}"
            ctx.notify(s, now).once(key).dm_user(lead, Template.COVERAGE_GAP, params)
        sent += 1
    return sent


def _gap_end(
    found: Sequence[Shift], a: datetime, b: datetime, horizon: datetime
) -> datetime | None:
    """Where a gap really ends: `b`, or past the horizon the next shift with someone."""
    if b < horizon:
        return b
    later = [x.start for x in found if x.people and x.start >= a]
    return min(later) if later else None


def refresh(*, ctx: Context, book: ScheduleBook, forget_emails: bool = False) -> int:
    """Re-read the schedules; tell the leads once about each one that fails."""
    problems = book.refresh(forget_emails=forget_emails)
    now = ctx.clock.now()
    for problem in problems:
        log.warning(
            "schedule not loaded; keeping the last good one",
            extra={"service": problem.service.key, "error": problem.reason},
        )
        with ctx.unit() as s:
            params = {
                "service": problem.service.key,
                "source": problem.source,
                "reason": problem.reason,
            }
            for lead in problem.service.leads or ctx.catalogue.admins:
                key = f"schedule-problem:{problem.service.key}:{problem.digest}:{lead}"
                ctx.notify(s, now).once(key).dm_user(lead, Template.SCHEDULE_PROBLEM, params)
    return len(problems)


def reload(*, ctx: Context, book: ScheduleBook, roster: OnCallRoster, actor: str) -> int:
    """`/consult oncall reload` (a lead or admin): re-read the schedules now; the number
    that failed (their leads are told why)."""
    catalogue = ctx.catalogue
    if actor not in catalogue.admins and not any(actor in s.leads for s in catalogue.services):
        raise Refused("Only a service lead or an admin can reload the schedules.")
    failed = refresh(ctx=ctx, book=book, forget_emails=True)
    with ctx.unit() as s:
        audit_change(
            s, "schedules_reloaded", actor=actor, now=ctx.clock.now(), details={"failed": failed}
        )
    roster.forget()
    watch_shifts(ctx=ctx, roster=roster)
    return failed
