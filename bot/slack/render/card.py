"""The consult card: the consult's message in the service channel, kept current with
chat.update, with its status line, headline (the notification text) and due line."""

from __future__ import annotations

from typing import Any

from bot.domain.lifecycle import OPEN_STATES, STATUS_LABELS, Status
from bot.domain.text import escape
from bot.slack.ids import ActionId
from bot.slack.render.context import RenderContext
from bot.slack.render.moves import transferred_from_line
from bot.slack.render.primitives import (
    URGENCY_ICONS,
    Blocks,
    actions,
    button,
    context,
    mention,
    section,
    slack_date,
    urgency_label,
    user_text,
)
from storage.models import Consult


def on_call_mentions(c: Consult, ctx: RenderContext) -> str:
    """The consult's on-call; while it waits to be acknowledged and its on-call is still on
    call, everyone on call with them too (overlapping shifts: all of them are nudged)."""
    people: tuple[str | None, ...] = (c.on_call,)
    if c.status == Status.OPEN and c.on_call:
        now = ctx.on_call(c.service)
        if c.on_call in now:
            people = (c.on_call, *(p for p in now if p != c.on_call))
    return ", ".join(mention(p) for p in people)


def status_line(c: Consult, ctx: RenderContext) -> str:
    """Where the consult stands, and with whom."""
    status = Status(c.status)
    label = STATUS_LABELS[status]
    if status is Status.OPEN:
        return f"*{label}* — waiting for {on_call_mentions(c, ctx)} to acknowledge"
    if status is Status.ACKNOWLEDGED:
        # The owner may differ from whoever acknowledged (handoffs): name the owner.
        return f"*{label}* {slack_date(c.acknowledged_at)} — owned by {mention(c.assignee)}"
    if status is Status.WAITING:
        return f"*{label}* — {mention(c.assignee)} asked {mention(c.requester)} for information"
    if status is Status.ANSWERED:
        return f"*{label}* by {mention(c.assignee)} {slack_date(c.answered_at)}"
    if status is Status.CLOSED:
        return f"*{label}* {slack_date(c.closed_at)}"
    return f"*{label}* {slack_date(c.cancelled_at)}"


def headline(c: Consult, service_name: str) -> str:
    """Fallback/notification text: reference, urgency, service — no patient details."""
    return f"{c.ref} · {urgency_label(c.urgency)} consult for {service_name}"


def due_line(c: Consult) -> str:
    """When it was opened, and the acknowledge and answer deadlines still ahead."""
    parts = [f"Opened {slack_date(c.created_at)}"]
    if c.status == Status.OPEN:
        parts.append(f"acknowledge by {slack_date(c.acknowledge_due_at)}")
    if Status(c.status) in OPEN_STATES:
        parts.append(f"answer by {slack_date(c.answer_due_at)}")
    if c.escalation_count:
        parts.append(f"escalated {c.escalation_count}×")
    return " · ".join(parts)


def _card_buttons(c: Consult) -> dict[str, Any]:
    buttons = []
    if c.status == Status.OPEN:
        buttons.append(button("Acknowledge", ActionId.ACKNOWLEDGE, c.ref, "primary"))
    buttons += [
        button("Answer", ActionId.ANSWER, c.ref),
        button("Need info", ActionId.NEED_INFO, c.ref),
        button("Hand off", ActionId.HANDOFF, c.ref),
        button("Transfer", ActionId.TRANSFER, c.ref),
        button("Critical result", ActionId.CRITICAL_FROM_CARD, c.ref, "danger"),
    ]
    return actions(f"card:{c.ref}", *buttons)


def consult_card(c: Consult, ctx: RenderContext) -> tuple[str, Blocks]:
    """The consult's message in the service channel, kept current with chat.update."""
    service = ctx.service(c.service)
    icon = URGENCY_ICONS.get(c.urgency, "")
    blocks: Blocks = [
        section(
            f"{icon} *{c.ref}* · *{urgency_label(c.urgency)}* consult for "
            f"*{escape(service.name)}*\n{status_line(c, ctx)}"
        ),
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Patient*\n{user_text(c.patient, 1900)}"},
                {"type": "mrkdwn", "text": f"*Requested by*\n{mention(c.requester)}"},
                {"type": "mrkdwn", "text": f"*On call*\n{on_call_mentions(c, ctx)}"},
                {"type": "mrkdwn", "text": f"*Assigned to*\n{mention(c.assignee)}"},
            ],
        },
        section(f"*Question*\n{user_text(c.question)}"),
    ]
    if (moved := transferred_from_line(c, ctx)) is not None:
        blocks.insert(1, moved)
    for fld in service.intake:
        value = (c.intake or {}).get(fld.key)
        if value:
            blocks.append(section(f"*{escape(fld.label)}*\n{user_text(value, 1900)}"))
    blocks.append(context(due_line(c)))
    if Status(c.status) in OPEN_STATES:
        blocks.append(_card_buttons(c))
    return headline(c, service.name), blocks
