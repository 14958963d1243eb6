"""The critical-result sweep: claims unacknowledged results whose re-notification is due
(row locks with SKIP LOCKED on PostgreSQL) and re-notifies everyone who should still act.
The `escalate_after`-th re-notification is followed, at the next due time, by the
escalation: `escalate_to` get the result with its buttons and the sender is told in plain
words it has not been received and to phone the clinician. Re-notifying goes on, to
everyone reached, until someone acknowledges.

The next time is stored in the row, `renotify_every` after *now*: two processes never send
the same re-notification and a restart after downtime sends one, not a burst."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from bot.domain.catalogue import Catalogue
from bot.domain.vocabulary import CriticalStep, Template
from bot.flows.consults.context import Context
from bot.flows.critical import active_recipients, audit, notify_recipient, reach
from bot.flows.notify import Notify
from storage import critical
from storage.models_critical import CriticalResult

log = logging.getLogger("careloop.critical")


@dataclass
class CriticalSweepResult:
    """What one sweep did (references only)."""

    renotified: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)


def critical_sweep(ctx: Context, limit: int = 500) -> CriticalSweepResult:
    """Re-notify (and escalate) due unacknowledged critical results; safe in many processes
    (`ctx`: the catalogue, database, clock and outbox)."""
    result = CriticalSweepResult()
    now = ctx.clock.now()
    with ctx.unit() as s:
        for r in critical.claim_due(session=s, now=now, limit=limit):
            try:
                with s.begin_nested():
                    _renotify(r, ctx.catalogue, ctx.notify(s, now), result)
            except Exception:  # noqa: BLE001 - one bad row must not stop the others
                log.exception("critical re-notification failed", extra={"ref": r.ref})
    if result.renotified:
        log.info(
            "critical sweep done", extra={"count": len(result.renotified), "event": "critical"}
        )
    return result


def _renotify(
    r: CriticalResult, catalogue: Catalogue, notify: Notify, result: CriticalSweepResult
) -> None:
    now, s = notify.now, notify.session
    try:
        settings = catalogue.critical_for(r.service)
    except KeyError:
        settings = catalogue.critical  # a service removed since: the global settings
    waiting = active_recipients(r)
    r.renotify_count = (r.renotify_count or 0) + 1
    r.next_renotify_at = now + settings.renotify_every
    n = r.renotify_count
    if n == settings.escalate_after + 1 and r.escalated_at is None:
        _escalate(r, settings.escalate_to, waiting, notify)
        result.escalated.append(str(r.ref))
    for user in waiting:
        notify_recipient(notify, r, user, f"renotify{n}", reminder=n)
    audit(s, r, CriticalStep.RENOTIFIED, "careloop", now, count=n, targets=waiting)
    result.renotified.append(str(r.ref))


def _escalate(
    r: CriticalResult, escalate_to: list[str], waiting: list[str], notify: Notify
) -> None:
    """`escalate_to` get the result with its buttons; the sender is told to phone."""
    now, added = notify.now, [u for u in escalate_to if u not in waiting]
    for user in added:
        reach(r, user, "escalated", now)
        notify_recipient(notify, r, user, "escalated", escalated=True, waiting=waiting)
    r.escalated_at = now
    params = {"critical": r.id, "waiting": waiting, "escalated_to": added}
    notify.once(f"critical:{r.id}:not_received").dm_user(
        r.sender, Template.CRITICAL_NOT_RECEIVED, params
    )
    audit(notify.session, r, CriticalStep.ESCALATED, "careloop", now, to=added, waiting=waiting)
    log.warning("critical result escalated", extra={"ref": r.ref, "event": "critical"})
