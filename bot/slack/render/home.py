"""App Home rendering: 'waiting on me', 'my requests', and for leads their services' week at
a glance. References, services, urgency, status and age only: never patient details."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bot.domain.lifecycle import STATUS_LABELS, Status
from bot.slack.render.blocks import (
    URGENCY_LABELS,
    RenderContext,
    age,
    context,
    escape,
    link,
    section,
    slack_date,
)
from storage import repo
from storage.models import Consult

MAX_ROWS = 15


def _row(c: Consult, ctx: RenderContext) -> str:
    due = c.acknowledge_due_at if c.status == Status.OPEN.value else c.answer_due_at
    overdue = " :warning: overdue" if due and due < ctx.now else ""
    return (
        f"• {link(c.permalink, c.ref)} — {escape(ctx.service_name(c.service))}, "
        f"{URGENCY_LABELS.get(c.urgency, c.urgency)}, {STATUS_LABELS[Status(c.status)].lower()}, "
        f"{age(c.created_at, ctx.now)} old, due {slack_date(due)}{overdue}"
    )


def _list(title: str, rows: list[Consult], ctx: RenderContext) -> list[dict[str, Any]]:
    body = "\n".join(_row(c, ctx) for c in rows[:MAX_ROWS]) or "Nothing right now."
    if len(rows) > MAX_ROWS:
        body += f"\n…and {len(rows) - MAX_ROWS} more (`/consult list`)."
    return [section(f"*{title}*"), section(body)]


def home_view(user: str, *, session: Session, ctx: RenderContext) -> dict[str, Any]:
    """The Home tab for one person."""
    overrides = repo.on_call_overrides(session=session)
    on_call_for = [s.key for s in ctx.catalogue.services if overrides.get(s.key, s.on_call) == user]
    consults = repo.open_for_user(session=session, user=user)
    waiting = [c for c in consults if c.assignee == user and c.status != "answered"]
    for key in on_call_for:
        waiting += [c for c in repo.unassigned_open(session=session, service=key)]
    mine = [c for c in consults if c.requester == user]
    blocks: list[dict[str, Any]] = [
        section(":hospital: *CareLoop* — consults that always come back."),
        *_list("Waiting on me", waiting, ctx),
        *_list("My requests", mine, ctx),
    ]
    led = [s for s in ctx.catalogue.services if user in s.leads or user in ctx.catalogue.admins]
    if led:
        from bot.reports.glance import week_at_a_glance  # noqa: PLC0415 - only leads need reports

        blocks += week_at_a_glance(session=session, services=led, ctx=ctx)
    blocks.append(
        context("Use `/consult` to open a consult and `/consult help` for every command.")
    )
    return {"type": "home", "blocks": blocks[:100]}
