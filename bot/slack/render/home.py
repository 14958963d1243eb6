"""App Home rendering from plain data: 'waiting on me', 'my requests', and for leads their
services' week at a glance (blocks built by the reports). References, services, urgency,
status and age only: never patient details."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.domain.lifecycle import Status
from bot.domain.text import escape
from bot.slack.render.context import RenderContext
from bot.slack.render.primitives import (
    Blocks,
    age,
    context,
    ref_link,
    section,
    slack_date,
    status_word,
    urgency_label,
)
from storage.models import Consult

MAX_ROWS = 15


def _row(c: Consult, ctx: RenderContext) -> str:
    due = c.acknowledge_due_at if c.status == Status.OPEN else c.answer_due_at
    overdue = " :warning: overdue" if due and due < ctx.now else ""
    return (
        f"• {ref_link(c)} — {escape(ctx.service_name(c.service))}, "
        f"{urgency_label(c.urgency)}, {status_word(c.status)}, "
        f"{age(c.created_at, ctx.now)} old, due {slack_date(due)}{overdue}"
    )


def _list(title: str, rows: Sequence[Consult], ctx: RenderContext) -> Blocks:
    body = "\n".join(_row(c, ctx) for c in rows[:MAX_ROWS]) or "Nothing right now."
    if len(rows) > MAX_ROWS:
        body += f"\n…and {len(rows) - MAX_ROWS} more (`/consult list`)."
    return [section(f"*{title}*"), section(body)]


def home_view(
    *,
    waiting: Sequence[Consult],
    mine: Sequence[Consult],
    glance: Blocks,
    ctx: RenderContext,
    critical: Blocks | None = None,
) -> dict[str, Any]:
    """The Home tab for one person: their unacknowledged critical results first, then
    what waits on them, what they asked, and (for leads) the week at a glance (empty for
    everyone else)."""
    blocks: Blocks = [
        section(":hospital: *CareLoop* — consults that always come back."),
        *(critical or []),
        *_list("Waiting on me", waiting, ctx),
        *_list("My requests", mine, ctx),
        *glance,
        context("Use `/consult` to open a consult and `/consult help` for every command."),
    ]
    return {"type": "home", "blocks": blocks[:100]}
