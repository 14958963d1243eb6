"""The overdue sweep: one periodic pass claims consults whose next nudge is due and queues
their nudges, escalations and requester notices in the same transaction.

Claiming uses row locks with SKIP LOCKED on PostgreSQL (SQLite serialises writers), and the
next nudge is set `nudge_every` after *now*, so two processes never send the same nudge and
a restart after downtime sends one nudge, not a burst. When more than `storm_threshold`
consults in one channel come due in the same sweep, one summary message replaces the
individual thread nudges, and each person concerned gets one direct message listing their
consults (`bot.flows.storm`).

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

from sqlalchemy.orm import Session, sessionmaker

from bot.domain import policy as sla
from bot.domain.catalogue import Catalogue
from bot.domain.clock import Clock
from bot.domain.vocabulary import Template
from bot.flows.consults.oncall import OnCall, OnCallRoster
from bot.flows.notify import Notify
from bot.flows.outbox import Outbox
from bot.flows.storm import STORM_CHUNK, Letters
from storage import repo
from storage.db import unit_of_work
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


def sweep(
    *,
    sessions: sessionmaker[Session],
    catalogue: Catalogue,
    clock: Clock,
    outbox: Outbox,
    on_call: OnCallRoster,
    limit: int = 500,
) -> SweepResult:
    """Find overdue consults and queue what they need; safe to run in many processes."""
    result = SweepResult()
    now = clock.now()
    with unit_of_work(sessions) as s:
        due = repo.claim_due_nudges(session=s, now=now, limit=limit)
        by_channel: dict[str, list[Consult]] = defaultdict(list)
        for consult in due:
            by_channel[consult.channel].append(consult)
        for channel, consults in by_channel.items():
            try:
                with s.begin_nested():
                    notify = Notify(outbox, s, now)
                    channel_sweep = _ChannelSweep(catalogue, notify, on_call.current(s), result)
                    channel_sweep.run(channel, consults)
            except Exception:  # noqa: BLE001 - one bad channel must not stop the others
                log.exception("sweep failed for a channel", extra={"channel": channel})
    if result.nudged or result.reminded:
        log.info(
            "sweep done",
            extra={"count": len(result.nudged) + len(result.reminded), "event": "sweep"},
        )
    return result


@dataclass(frozen=True)
class _ChannelSweep:
    """One channel's due consults in one sweep, in one savepoint (`notify.session`)."""

    catalogue: Catalogue
    notify: Notify
    on_call: OnCall
    result: SweepResult

    @property
    def now(self) -> datetime:
        return self.notify.now

    def run(self, channel: str, consults: list[Consult]) -> None:
        nudges = [(c, plan) for c in consults if (plan := self._plan(c)) is not None]
        if not nudges:
            return
        storm = len(nudges) > self.catalogue.storm_threshold
        if storm:
            self._storm(channel, nudges)
        # In a storm, one direct message per person instead of one per consult.
        letters = Letters(self.notify, grouped=storm)
        for c, plan in nudges:
            self._nudge(c, plan, letters, thread=not storm)
            self.result.nudged.append(c.ref)
            if plan.escalated:
                self.result.escalated.append(c.ref)
        letters.send()

    def _plan(self, c: Consult) -> sla.NudgePlan | None:
        """The nudge `c` gets now, its row updated for it; None when it gets none now
        (snoozed, unknown service, outside working hours, or a reminder to the requester)."""
        now = self.now
        if c.snoozed_until and c.snoozed_until > now:
            c.next_nudge_at = c.snoozed_until
            return None
        try:
            service = self.catalogue.service_by_key(c.service)
        except KeyError:
            self._skip_unknown_service(c)
            return None
        clocks = self.catalogue.policy(service, c.urgency)
        if clocks.hours is not None and not clocks.hours.is_open(now):
            # Clocks with working hours also nudge only in working hours: nobody is paged
            # at night about a routine consult.
            c.next_nudge_at = clocks.hours.next_open(now)
            return None
        next_at = sla.add_time(clocks, now, clocks.nudge_every)
        if c.nudge_phase == sla.Phase.REQUESTER:
            self._remind_requester(c, next_at)
            return None
        # Whoever owns it (acknowledged, or handed off before acknowledging), else everyone
        # on call (overlapping shifts name several).
        first = c.assignee or self.on_call.people(service)
        plan = sla.plan_nudge(
            ladder=sla.Ladder.build(first=first, backup=service.backup, leads=service.leads),
            state=sla.NudgeState(level=c.nudge_level, nudges_at_level=c.nudges_at_level),
            escalate_after=clocks.escalate_after,
            nudge_every=clocks.nudge_every,
            now=now,
        )
        c.nudge_level, c.nudges_at_level = plan.level, plan.nudges_at_level
        c.nudge_count = (c.nudge_count or 0) + 1
        c.last_nudge_at = now
        c.next_nudge_at = next_at
        return plan

    def _storm(self, channel: str, nudges: list[tuple[Consult, sla.NudgePlan]]) -> None:
        """One summary in the channel instead of a thread nudge per consult (one per
        `STORM_CHUNK` consults, so each fits in one Slack message)."""
        for start in range(0, len(nudges), STORM_CHUNK):
            chunk = nudges[start : start + STORM_CHUNK]
            targets = sorted({t for _, plan in chunk for t in plan.targets})
            counts = repr(sorted((c.id, c.nudge_count) for c, _ in chunk))
            once = self.notify.once("storm:" + hashlib.sha1(counts.encode()).hexdigest())
            once.channel_message(
                channel, Template.STORM, {"ids": [c.id for c, _ in chunk], "targets": targets}
            )
        self.result.storms[channel] = len(nudges)

    def _skip_unknown_service(self, c: Consult) -> None:
        """Leave a consult whose service the catalogue lacks for later, loudly but not hot."""
        policy = self.catalogue.urgency.get(c.urgency)
        c.next_nudge_at = self.now + (policy.nudge_every if policy else UNKNOWN_SERVICE_RETRY)
        log.error(
            "consult not nudged: its service is not in the catalogue; put the service back",
            extra={"ref": c.ref, "service": c.service, "event": "sweep"},
        )
        self.result.unknown_service.append(c.ref)

    def _nudge(self, c: Consult, plan: sla.NudgePlan, letters: Letters, *, thread: bool) -> None:
        params = {
            "targets": list(plan.targets),
            "phase": c.nudge_phase,
            "escalated": plan.escalated,
            "level": plan.level,
        }
        n, notify = c.nudge_count, self.notify
        if thread:
            notify.once(f"nudge:{c.id}:{n}").latest_thread_note(c, Template.NUDGE, params)
        first_of_phase = plan.level == 0 and plan.nudges_at_level == 1
        if plan.escalated:
            c.escalated_at = self.now
            c.escalation_count = (c.escalation_count or 0) + 1
            for user in plan.targets:
                key = f"escalation:{c.id}:{n}:{user}"
                letters.add(key, c, user, Template.ESCALATION, params)
            notify.card_update(c.id)
        if plan.escalated or first_of_phase:
            letters.add(f"overdue:{c.id}:{n}", c, c.requester, Template.REQUESTER_OVERDUE, params)
        repo.add_audit(
            session=notify.session,
            consult_id=c.id,
            actor="careloop",
            action="escalated" if plan.escalated else "nudged",
            at=self.now,
            details={"phase": c.nudge_phase, "level": plan.level, "targets": list(plan.targets)},
        )
        log.info(
            "consult escalated" if plan.escalated else "consult nudged",
            extra={"ref": c.ref, "phase": c.nudge_phase, "ladder_level": plan.level},
        )

    def _remind_requester(self, c: Consult, next_at: datetime) -> None:
        c.nudge_count = (c.nudge_count or 0) + 1
        c.nudges_at_level = (c.nudges_at_level or 0) + 1
        c.last_nudge_at = self.now
        c.next_nudge_at = next_at
        once = self.notify.once(f"remind:{c.id}:{c.nudge_count}")
        once.dm_requester(c, Template.REQUESTER_REMINDER)
        repo.add_audit(
            session=self.notify.session,
            consult_id=c.id,
            actor="careloop",
            action="requester_reminded",
            at=self.now,
            details={"count": c.nudges_at_level},
        )
        self.result.reminded.append(c.ref)
