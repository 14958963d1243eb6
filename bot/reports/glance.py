"""The leads' App Home "week at a glance": each led service over the last 7 days and what is
overdue now (count and references only), rendered by `bot.slack.render.figures`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from bot.domain.catalogue import Service
from bot.reports.compute import compute_report
from bot.reports.model import as_utc
from bot.reports.queries import overdue_refs
from bot.slack.render.context import RenderContext
from bot.slack.render.figures import glance_blocks

GLANCE_DAYS = 7


def week_at_a_glance(
    *, session: Session, services: list[Service], ctx: RenderContext
) -> list[dict[str, Any]]:
    """App Home blocks for leads: each led service over the last 7 days, and what is
    overdue now (count and references only)."""
    if not services:
        return []
    now = as_utc(ctx.now)
    keys = [s.key for s in services]
    report = compute_report(
        session,
        catalogue=ctx.catalogue,
        since=now - timedelta(days=GLANCE_DAYS),
        until=now,
        now=now,
        services=keys,
        holders=False,  # App Home does not show time held
    )
    overdue = overdue_refs(session, keys, now)
    return glance_blocks(
        [
            (s.name, entry.figures.as_dict(), overdue[s.key])
            for entry, s in zip(report.services, services, strict=True)
        ]
    )
