"""The follow-up sweep: claims open follow-ups whose nudge is due (row locks with SKIP
LOCKED on PostgreSQL; on SQLite the write lock serialises sweeps) and nudges their owner
(everyone `followup_owner.recipients_for` names). The `escalate_after`-th nudge is followed,
at the next due time, by the escalation: `[followups] escalate_to` get the follow-up with
its buttons. With `escalate_to` empty there is no escalation: the owner keeps being nudged
every `nudge_every` until it is done or handed over.

The next time is stored in the row, `nudge_every` after *now*: two processes never send the
same nudge and a restart after downtime sends one, not a burst. Every message has a dedupe
key (`followup:<id>:nudge<n>:<user>`, `followup:<id>:escalated:<user>`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from bot.domain.catalogue_schema import FollowupSettings
from bot.domain.vocabulary import FollowUpStep, Template
from bot.flows.consults.context import Context
from bot.flows.followup_owner import audit, tell_owner
from bot.flows.notify import Notify
from storage import followups
from storage.models_followups import FollowUp

log = logging.getLogger("careloop.followups")


@dataclass
class FollowUpSweepResult:
    """What one sweep did (references only)."""

    nudged: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)


def followup_sweep(ctx: Context, limit: int = 500) -> FollowUpSweepResult:
    """Nudge (and escalate) overdue follow-ups; safe in many processes (`ctx`: the
    catalogue, database, clock and outbox)."""
    result = FollowUpSweepResult()
    now = ctx.clock.now()
    settings = ctx.catalogue.followups
    with ctx.unit() as s:
        for f in followups.claim_due(session=s, now=now, limit=limit):
            try:
                with s.begin_nested():
                    _nudge(f, settings, ctx.notify(s, now), result)
            except Exception:  # noqa: BLE001 - one bad row must not stop the others
                log.exception("follow-up nudge failed", extra={"ref": f.ref})
    if result.nudged:
        log.info("follow-up sweep done", extra={"count": len(result.nudged), "event": "followup"})
    return result


def _nudge(
    f: FollowUp, settings: FollowupSettings, notify: Notify, result: FollowUpSweepResult
) -> None:
    now = notify.now
    f.nudge_count = (f.nudge_count or 0) + 1
    f.next_nudge_at = now + settings.nudge_every
    n = f.nudge_count
    if n == settings.escalate_after + 1 and f.escalated_at is None and settings.escalate_to:
        _escalate(f, settings.escalate_to, notify)
        result.escalated.append(str(f.ref))
    told = tell_owner(notify, f, "overdue", f"nudge{n}", reminder=n)
    audit(notify.session, f, FollowUpStep.NUDGED, "careloop", now, count=n, targets=told)
    result.nudged.append(str(f.ref))


def _escalate(f: FollowUp, escalate_to: list[str], notify: Notify) -> None:
    """`escalate_to` get the overdue follow-up, with its buttons (they may act on it)."""
    for user in escalate_to:
        notify.once(f"followup:{f.id}:escalated:{user}").dm_user(
            user, Template.FOLLOWUP_ESCALATED, {"followup": f.id, "reminders": f.nudge_count - 1}
        )
    f.escalated_at = notify.now
    audit(notify.session, f, FollowUpStep.ESCALATED, "careloop", notify.now, to=escalate_to)
    log.warning("follow-up escalated", extra={"ref": f.ref, "event": "followup"})
