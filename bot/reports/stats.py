"""`/consult stats [service] [7d|30d|90d]`: who may see which service's figures (its leads
and CareLoop admins; refusals are audited), the figures, and the reply's Block Kit (from
`bot.slack.render.figures`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from bot.domain.catalogue import Catalogue, Service
from bot.domain.clock import Clock
from bot.domain.hops import HopRole
from bot.domain.text import escape
from bot.reports.compute import compute_report
from bot.reports.model import Report
from bot.slack.render.figures import stats_reply


class AuditRefusal(Protocol):
    """Records a refusal in the audit log (`ConsultService.audit_refusal`)."""

    def __call__(self, *, user: str, action: str, reason: str, ref: str | None) -> None: ...


def can_see(catalogue: Catalogue, user: str, service: Service) -> bool:
    """Only a service's leads and CareLoop admins may see its figures."""
    return user in catalogue.admins or user in service.leads


def _chosen(
    catalogue: Catalogue, audit_refusal: AuditRefusal, user: str, service: str | None
) -> list[Service] | str:
    """The services whose figures `user` asked for and may see, or the refusal text."""
    if not service:
        chosen = [s for s in catalogue.services if can_see(catalogue, user, s)]
        if not chosen:
            audit_refusal(user=user, action="stats", reason="leads no service", ref=None)
            return (
                ":no_entry: Figures are for service leads and CareLoop admins, and you don't "
                "lead a service."
            )
        return chosen
    found = catalogue.service(service)
    if found is None:
        valid = ", ".join(f"`{s.key}`" for s in catalogue.services)
        return f":warning: There is no service `{escape(service)}`. Services: {valid}."
    if not can_see(catalogue, user, found):
        audit_refusal(user=user, action="stats", reason=f"not a lead of {found.key}", ref=None)
        return (
            f":no_entry: Only the leads of {escape(found.name)} and CareLoop admins can "
            "see its figures."
        )
    return [found]


def stats_for_slack(
    *,
    catalogue: Catalogue,
    sessions: sessionmaker[Session],
    clock: Clock,
    audit_refusal: AuditRefusal,
    user: str,
    service: str | None,
    days: int,
) -> str | dict[str, Any]:
    """`/consult stats [service] [7d|30d|90d]`: figures for services the user may see.

    A service's figures are for its leads and CareLoop admins; anyone else gets a refusal
    (audited) and no figures. Without a service: every service the user leads (admins:
    all). Returns refusal text, or ``{"text": fallback, "blocks": [...]}``.
    """
    chosen = _chosen(catalogue, audit_refusal, user, service)
    if isinstance(chosen, str):
        return chosen
    now = clock.now()
    with sessions.begin() as session:
        report = compute_report(
            session,
            catalogue=catalogue,
            since=now - timedelta(days=days),
            until=now,
            now=now,
            services=[s.key for s in chosen],
        )
    pairs = [
        (s.name, entry.as_dict() | {"critical": crit.as_dict()} | _held(report, s.key))
        for s, entry, crit in zip(chosen, report.services, report.critical, strict=True)
    ]
    return stats_reply(pairs, days=days)


def _held(report: Report, key: str) -> dict[str, Any]:
    """A service's time held for the reply: its consultants' (`holders`, as in the report's
    JSON) and its queue's (`queue_seconds`)."""
    if report.held is None:
        return {}
    queue = report.held.queues.get(key)
    return {
        "holders": [
            h.as_dict()
            for h in report.held.holders
            if h.service == key and h.role == HopRole.CONSULTANT
        ],
        "queue_seconds": queue.as_dict() if queue and queue.hops else None,
    }
