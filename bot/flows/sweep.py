"""The overdue sweep: one periodic pass claims consults whose next nudge is due and queues
their nudges, escalations and requester notices in the same transaction.

Claiming uses row locks with SKIP LOCKED on PostgreSQL (SQLite serialises writers), and the
next nudge is set `nudge_every` after *now*, so two processes never send the same nudge and
a restart after downtime sends one nudge, not a burst. When more than `storm_threshold`
consults in one channel come due in the same sweep, one summary message replaces the
individual thread nudges.

A consult whose service key is not in this process's catalogue (start-up refuses that, but
during a rolling change a process still on the old catalogue can create one) is skipped
with an ERROR line and looked at again one `nudge_every` later; it never stops the other
consults of its channel.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.domain import policy as sla
from bot.domain.vocabulary import Kind
from bot.services import Services
from storage import repo
from storage.models import Consult

log = logging.getLogger("careloop.escalation")

# How long a consult of an unknown service waits before the sweep looks at it again, when
# its urgency has no global policy to take `nudge_every` from.
UNKNOWN_SERVICE_RETRY = timedelta(hours=1)


@dataclass
class SweepResult:
    """What one sweep did (for logs, tests and the demo)."""

    nudged: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    reminded: list[str] = field(default_factory=list)
    storms: dict[str, int] = field(default_factory=dict)
    unknown_service: list[str] = field(default_factory=list)


def sweep(services: Services, *, limit: int = 500) -> SweepResult:
    """Find overdue consults and queue what they need; safe to run in many processes."""
    result = SweepResult()
    now = services.clock.now()
    with services.consults.unit() as s:
        due = repo.claim_due_nudges(session=s, now=now, limit=limit)
        by_channel: dict[str, list[Consult]] = defaultdict(list)
        for consult in due:
            by_channel[consult.channel].append(consult)
        for channel, consults in by_channel.items():
            try:
                with s.begin_nested():
                    _sweep_channel(services, s, channel, consults, now, result)
            except Exception:  # noqa: BLE001 - one bad channel must not stop the others
                log.exception("sweep failed for a channel", extra={"channel": channel})
    if result.nudged or result.reminded:
        log.info(
            "sweep done",
            extra={"count": len(result.nudged) + len(result.reminded), "event": "sweep"},
        )
    return result


def _sweep_channel(
    services: Services,
    s: Session,
    channel: str,
    consults: list[Consult],
    now: datetime,
    result: SweepResult,
) -> None:
    catalogue = services.catalogue
    overrides = repo.on_call_overrides(session=s)
    nudges: list[tuple[Consult, sla.NudgePlan]] = []
    for c in consults:
        if c.snoozed_until and c.snoozed_until > now:
            c.next_nudge_at = c.snoozed_until
            continue
        try:
            service = catalogue.service_by_key(c.service)
        except KeyError:
            _skip_unknown_service(services, c, now)
            result.unknown_service.append(c.ref)
            continue
        clocks = catalogue.policy(service, c.urgency)
        if clocks.hours is not None and not clocks.hours.is_open(now):
            # Clocks with working hours also nudge only in working hours: nobody is paged
            # at night about a routine consult.
            c.next_nudge_at = clocks.hours.next_open(now)
            continue
        if c.nudge_phase == sla.Phase.REQUESTER:
            _remind_requester(services, s, c, now, sla.add_time(clocks, now, clocks.nudge_every))
            result.reminded.append(c.ref)
            continue
        # Whoever owns it (acknowledged, or handed off before acknowledging), else on-call.
        first = c.assignee or overrides.get(service.key, service.on_call)
        ladder = sla.Ladder.build(first=first, backup=service.backup, leads=service.leads)
        plan = sla.plan_nudge(
            ladder=ladder,
            state=sla.NudgeState(level=c.nudge_level, nudges_at_level=c.nudges_at_level),
            escalate_after=clocks.escalate_after,
            nudge_every=clocks.nudge_every,
            now=now,
        )
        c.nudge_level, c.nudges_at_level = plan.level, plan.nudges_at_level
        c.nudge_count = (c.nudge_count or 0) + 1
        c.last_nudge_at = now
        c.next_nudge_at = sla.add_time(clocks, now, clocks.nudge_every)
        nudges.append((c, plan))
    if not nudges:
        return
    storm = len(nudges) > catalogue.storm_threshold
    if storm:
        targets = sorted({t for _, plan in nudges for t in plan.targets})
        services.outbox.add(
            s,
            kind=Kind.CHANNEL,
            template="storm",
            channel=channel,
            now=now,
            params={"ids": [c.id for c, _ in nudges], "targets": targets},
            dedupe_key="storm:"
            + hashlib.sha1(
                repr(sorted((c.id, c.nudge_count) for c, _ in nudges)).encode()
            ).hexdigest(),
        )
        result.storms[channel] = len(nudges)
    for c, plan in nudges:
        _notify(services, s, c, plan, now, thread=not storm)
        result.nudged.append(c.ref)
        if plan.escalated:
            result.escalated.append(c.ref)


def _skip_unknown_service(services: Services, c: Consult, now: datetime) -> None:
    """Leave a consult whose service the catalogue lacks for later, loudly but not hot."""
    policy = services.catalogue.urgency.get(c.urgency)
    c.next_nudge_at = now + (policy.nudge_every if policy else UNKNOWN_SERVICE_RETRY)
    log.error(
        "consult not nudged: its service is not in the catalogue; put the service back",
        extra={"ref": c.ref, "service": c.service, "event": "sweep"},
    )


def _notify(
    services: Services, s: Session, c: Consult, plan: sla.NudgePlan, now: datetime, *, thread: bool
) -> None:
    params = {
        "targets": list(plan.targets),
        "phase": c.nudge_phase,
        "escalated": plan.escalated,
        "level": plan.level,
    }
    n = c.nudge_count
    if thread:
        services.outbox.add(
            s,
            kind=Kind.THREAD,
            template="nudge",
            consult_id=c.id,
            now=now,
            params=params,
            dedupe_key=f"nudge:{c.id}:{n}",
        )
    first_of_phase = plan.level == 0 and plan.nudges_at_level == 1
    if plan.escalated:
        c.escalated_at = now
        c.escalation_count = (c.escalation_count or 0) + 1
        for user in plan.targets:
            services.outbox.add(
                s,
                kind=Kind.DM,
                template="escalation",
                consult_id=c.id,
                user=user,
                now=now,
                params=params,
                dedupe_key=f"escalation:{c.id}:{n}:{user}",
            )
        services.outbox.add(s, kind=Kind.UPDATE, template="card", consult_id=c.id, now=now)
    if plan.escalated or first_of_phase:
        services.outbox.add(
            s,
            kind=Kind.DM,
            template="requester_overdue",
            consult_id=c.id,
            user=c.requester,
            now=now,
            params=params,
            dedupe_key=f"overdue:{c.id}:{n}",
        )
    repo.add_audit(
        session=s,
        consult_id=c.id,
        actor="careloop",
        action="escalated" if plan.escalated else "nudged",
        at=now,
        details={"phase": c.nudge_phase, "level": plan.level, "targets": list(plan.targets)},
    )
    log.info(
        "consult escalated" if plan.escalated else "consult nudged",
        extra={"ref": c.ref, "phase": c.nudge_phase, "ladder_level": plan.level},
    )


def _remind_requester(
    services: Services, s: Session, c: Consult, now: datetime, next_at: datetime
) -> None:
    c.nudge_count = (c.nudge_count or 0) + 1
    c.nudges_at_level = (c.nudges_at_level or 0) + 1
    c.last_nudge_at = now
    c.next_nudge_at = next_at
    services.outbox.add(
        s,
        kind=Kind.DM,
        template="requester_reminder",
        consult_id=c.id,
        user=c.requester,
        now=now,
        dedupe_key=f"remind:{c.id}:{c.nudge_count}",
    )
    repo.add_audit(
        session=s,
        consult_id=c.id,
        actor="careloop",
        action="requester_reminded",
        at=now,
        details={"count": c.nudges_at_level},
    )
