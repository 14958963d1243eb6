"""What a transfer and an urgency change look like in Slack: the card's "transferred from"
line, the old service's card once the consult has gone (where to, by whom, why; no
buttons), the requester's message, the urgency change's thread note and direct message,
and the Transfer form (the service to send it to, and why). Pure Block Kit from plain data;
patient details and reasons only in blocks, never in the fallback text."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.domain.catalogue import Catalogue
from bot.domain.text import escape
from bot.slack.ids import BlockId, CallbackId
from bot.slack.render.context import RenderContext
from bot.slack.render.modals import modal
from bot.slack.render.primitives import (
    URGENCY_ICONS,
    Blocks,
    context,
    mention,
    quote,
    ref_link,
    section,
    slack_date,
    urgency_label,
    user_text,
)
from storage.models import Consult

# The form asks for a short reason (the flow keeps up to `drafts.NOTE_MAX` characters).
REASON_MAX = 1000
Params = dict[str, Any]
Rendered = tuple[str, Blocks]


def transferred_from_line(c: Consult, ctx: RenderContext) -> dict[str, Any] | None:
    """The card's line for a consult that came from another service (None: it did not)."""
    if not c.transferred_from:
        return None
    name = escape(ctx.service_name(c.transferred_from))
    reason = f": {user_text(c.transfer_reason, 2000)}" if c.transfer_reason else "."
    return context(
        f":arrow_right_hook: Transferred from *{name}* (was {escape(c.former_ref or '')}) by "
        f"{mention(c.transferred_by)} {slack_date(c.transferred_at)}{reason}"
    )


def _when(p: Params) -> datetime | None:
    return datetime.fromisoformat(p["at"]) if p.get("at") else None


def transferred_card(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    """The old service's card after the transfer: it says where the consult went, keeps
    what was asked for context, and has no buttons (it is no longer this service's)."""
    old = escape(ctx.service_name(p.get("from_service", "")))
    new = escape(ctx.service_name(p.get("to_service", "")))
    icon = URGENCY_ICONS.get(c.urgency, "")
    reason = f"\n{quote(p.get('reason'))}" if p.get("reason") else ""
    # Linked while the consult still has that reference (it may have moved on since).
    to_ref = ref_link(c) if c.ref == p.get("to_ref") else escape(p.get("to_ref", ""))
    blocks: Blocks = [
        section(
            f"{icon} *{escape(p.get('from_ref', ''))}* · *{urgency_label(c.urgency)}* consult "
            f"for *{old}*\n*Transferred* to *{new}* as {to_ref} by "
            f"{mention(p.get('by'))} {slack_date(_when(p))}{reason}"
        ),
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Patient*\n{user_text(c.patient, 1900)}"},
                {"type": "mrkdwn", "text": f"*Requested by*\n{mention(c.requester)}"},
            ],
        },
        section(f"*Question*\n{user_text(c.question)}"),
        context(f"No longer with {old}: follow it in <#{c.channel}>."),
    ]
    return f"{p.get('from_ref', '')} was transferred to {new}", blocks


def transferred(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    """To the requester: the consult went to another service, under a new reference."""
    old = escape(ctx.service_name(p.get("from_service", "")))
    new = escape(ctx.service_name(p.get("to_service", "")))
    was = escape(p.get("from_ref", ""))
    body = (
        f":arrow_right_hook: {mention(p.get('by'))} transferred your consult *{was}* from "
        f"*{old}* to *{new}*:\n{quote(p.get('reason'))}\nIt is now *{ref_link(c)}* in "
        f"<#{c.channel}> · acknowledge by {slack_date(c.acknowledge_due_at)} · answer by "
        f"{slack_date(c.answer_due_at)}. {was} still finds it."
    )
    return f"{was} was transferred to {new}; it is now {c.ref}", [section(body)]


def _change(p: Params) -> str:
    return f"from *{urgency_label(p.get('from', ''))}* to *{urgency_label(p.get('to', ''))}*"


def _deadlines(c: Consult) -> str:
    ack = f"acknowledge by {slack_date(c.acknowledge_due_at)} · " if c.status == "open" else ""
    return f"{ack}answer by {slack_date(c.answer_due_at)}"


def urgency_thread(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    """The thread note: who changed the urgency, from what to what, why, the deadlines."""
    body = (
        f":arrows_counterclockwise: {mention(p.get('by'))} changed the urgency {_change(p)}:\n"
        f"{quote(p.get('reason'))}\nNow: {_deadlines(c)}."
    )
    return f"{c.ref}: urgency changed", [section(body)]


def urgency_changed(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    """To the requester (or, when the requester changed it, the owner)."""
    body = (
        f":arrows_counterclockwise: {mention(p.get('by'))} changed the urgency of "
        f"*{ref_link(c)}* {_change(p)}:\n{quote(p.get('reason'))}\nNow: {_deadlines(c)}."
    )
    return f"{c.ref}: urgency changed to {urgency_label(p.get('to', ''))}", [section(body)]


def transfer_modal(catalogue: Catalogue, ref: str, current: str) -> dict[str, Any]:
    """Transfer: the service to send the consult to (any but its own) and why."""
    options = [
        {"text": {"type": "plain_text", "text": s.name[:75]}, "value": s.key}
        for s in catalogue.services
        if s.key != current
    ][:100]
    service = {
        "type": "input",
        "block_id": BlockId.TRANSFER_TO,
        "label": {"type": "plain_text", "text": "Transfer to"},
        "element": {"type": "static_select", "action_id": "value", "options": options},
    }
    reason = {
        "type": "input",
        "block_id": BlockId.REASON,
        "label": {"type": "plain_text", "text": "Why this service"},
        "element": {
            "type": "plain_text_input",
            "action_id": "value",
            "multiline": True,
            "max_length": REASON_MAX,
        },
        "hint": {
            "type": "plain_text",
            "text": "Shown on the new service's card and sent to the requester.",
        },
    }
    blocks = [context(f"Consult *{ref}*"), service, reason]
    return modal(CallbackId.TRANSFER, "Transfer consult", "Transfer", ref, blocks)
