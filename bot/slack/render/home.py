"""App Home rendering from plain data: the consultant's on-call now and next shift, 'waiting on me', 'my requests', and for leads their
services' week at a glance (blocks built by the reports). References, services, urgency,
status, age and whose request it is (a user id) only: never patient details."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.domain.lifecycle import Status
from bot.domain.text import escape
from bot.slack.render.context import RenderContext
from bot.slack.render.primitives import (
    Blocks,
    age,
    context,
    mention,
    ref_link,
    section,
    slack_date,
    status_word,
    urgency_label,
)
from storage.models import Consult

MAX_ROWS = 15


def _row(c: Consult, ctx: RenderContext, for_whom: bool = False) -> str:
    due = c.acknowledge_due_at if c.status == Status.OPEN else c.answer_due_at
    overdue = " :warning: overdue" if due and due < ctx.now else ""
    whose = f", for {mention(c.requester)}" if for_whom else ""
    return (
        f"• {ref_link(c)} — {escape(ctx.service_name(c.service))}, "
        f"{urgency_label(c.urgency)}, {status_word(c.status)}, "
        f"{age(c.created_at, ctx.now)} old, due {slack_date(due)}{overdue}{whose}"
    )


def _list(
    title: str,
    rows: Sequence[Consult],
    ctx: RenderContext,
    total: int | None = None,
    for_whom: bool = False,
) -> Blocks:
    """Up to MAX_ROWS of `rows`, then how many more there are (of `total`, when the caller
    passed only the first rows); `for_whom`: each row says whose request it is."""
    lines = (_row(c, ctx, for_whom) for c in rows[:MAX_ROWS])
    body = "\n".join(lines) or "Nothing right now."
    total = len(rows) if total is None else total
    if total > MAX_ROWS:
        body += f"\n…and {total - MAX_ROWS} more (`/consult list`)."
    return [section(f"*{title}*"), section(body)]


@dataclass(frozen=True)
class Duty:
    """A consultant's on-call: (service name, until) for each service they cover now, and
    their next scheduled shift (service name, start, end). No patient data."""

    now: list[tuple[str, datetime | None]] = field(default_factory=list)
    next: tuple[str, datetime, datetime] | None = None


def _duty(duty: Duty) -> Blocks:
    lines = [
        f":pager: On call now for {escape(name)}" + (f" until {slack_date(until)}" if until else "")
        for name, until in duty.now
    ]
    if duty.next:
        name, start, end = duty.next
        lines.append(
            f":calendar: Next shift: {escape(name)}, {slack_date(start)} to {slack_date(end)}"
        )
    return [section("\n".join(lines))] if lines else []


def home_view(
    *,
    waiting: Sequence[Consult],
    mine: Sequence[Consult],
    glance: Blocks,
    covering: Sequence[Consult] = (),
    ctx: RenderContext,
    critical: Blocks | None = None,
    duty: Duty | None = None,
    owed: Blocks | None = None,
    waiting_total: int | None = None,
) -> dict[str, Any]:
    """The Home tab for one person: their unacknowledged critical results first, their
    on-call, what waits on them, what they asked, the requests of colleagues they cover
    (only while they cover someone), what they owe to patients (follow-up
    references and due times, built by `render.followups`), and (for leads) the week at a
    glance (empty for everyone else). `waiting_total`: how many wait on them, when `waiting`
    holds only the first rows."""
    blocks: Blocks = [
        section(":hospital: *CareLoop* — consults that always come back."),
        *(critical or []),
        *(_duty(duty) if duty else []),
        *_list("Waiting on me", waiting, ctx, waiting_total),
        *_list("My requests", mine, ctx),
        *(_list("Covering for colleagues", covering, ctx, for_whom=True) if covering else []),
        *(owed or []),
        *glance,
        context("Use `/consult` to open a consult and `/consult help` for every command."),
    ]
    return {"type": "home", "blocks": blocks[:100]}
