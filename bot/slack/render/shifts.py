"""The messages about on-call schedules: the incoming on-call's shift start (with the
consults that moved to them), the outgoing consultant's hand-off reminder (one button),
and the leads' coverage-gap and broken-schedule warnings. References and service names
only in the fallback text."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.domain.text import escape
from bot.slack.ids import ActionId
from bot.slack.render.context import RenderContext
from bot.slack.render.primitives import (
    Blocks,
    actions,
    button,
    context,
    mention,
    ref_link,
    section,
    slack_date,
    status_word,
    urgency_label,
)

Params = dict[str, Any]


def _when(value: str | None) -> str:
    return slack_date(datetime.fromisoformat(value)) if value else "further notice"


def _lines(ids: list[int], ctx: RenderContext) -> str:
    return "\n".join(
        f"• {ref_link(x)} — {urgency_label(x.urgency)}, {status_word(x.status)}"
        for x in ctx.load(ids)
    )


def _name(user: str, ctx: RenderContext) -> str:
    """A button label cannot mention: the `[people]` name, else "the incoming on-call"."""
    for name, uid in ctx.catalogue.people.items():
        if uid == user:
            return name
    return "the incoming on-call"


def shift_started(c: Any, p: Params, ctx: RenderContext) -> tuple[str, Blocks]:
    """To the incoming on-call: you are on call, and these consults now wait for you."""
    name = escape(ctx.service_name(p.get("service", "")))
    ids = list(p.get("ids") or [])
    head = f":pager: You are on call for *{name}* until {_when(p.get('until'))}."
    if ids:
        head += f"\n{len(ids)} consult(s) waiting for acknowledgement moved to you:\n"
        head += _lines(ids, ctx)
    else:
        head += "\nNo consults are waiting for acknowledgement."
    return f"You are on call for {name}", [section(head)]


def handoff_reminder(c: Any, p: Params, ctx: RenderContext) -> tuple[str, Blocks]:
    """To the outgoing consultant: your shift ends soon and you still own these."""
    name = escape(ctx.service_name(p.get("service", "")))
    ids = list(p.get("ids") or [])
    to = str(p.get("to") or "")
    blocks: Blocks = [
        section(
            f":hourglass: Your *{name}* shift ends {_when(p.get('end'))}. You still own "
            f"{len(ids)} open consult(s):\n{_lines(ids, ctx)}"
        ),
        actions(
            f"handoff_all:{to}",
            button(f"Hand off to {_name(to, ctx)}", ActionId.HANDOFF_ALL, to, "primary"),
        ),
        context(f"The button hands all your open consults to {mention(to)} with a note."),
    ]
    return f"Your {name} shift ends soon: {len(ids)} consult(s) to hand off", blocks


def coverage_gap(c: Any, p: Params, ctx: RenderContext) -> tuple[str, Blocks]:
    """To a lead: nobody is scheduled for a stretch ahead."""
    name = escape(ctx.service_name(p.get("service", "")))
    body = (
        f":warning: Nobody is scheduled on call for *{name}* from {_when(p.get('start'))} "
        f"until {_when(p.get('end'))}. Consults then go to {mention(p.get('fallback'))}."
    )
    unnamed = [escape(str(u)) for u in p.get("unnamed") or []]
    if unnamed:
        body += (
            f"\nThe schedule names someone I cannot match to a Slack user: {', '.join(unnamed)}."
        )
    return f"Coverage gap for {name}", [section(body)]


def schedule_problem(c: Any, p: Params, ctx: RenderContext) -> tuple[str, Blocks]:
    """To a lead: a schedule failed to load; the last good one is still used."""
    name = escape(ctx.service_name(p.get("service", "")))
    body = (
        f":warning: The on-call schedule for *{name}* (`{escape(str(p.get('source', '')))}`) "
        f"could not be loaded: {escape(str(p.get('reason', '')))}. I keep using the last good "
        "schedule until it is fixed."
    )
    return f"The on-call schedule for {name} could not be loaded", [section(body)]
