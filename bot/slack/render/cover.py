"""The messages of requester cover and hand-over: the covering clinician's "you cover for"
and "cover ended" (with the covered requester's consults), the thread note and the two
direct messages of a hand-over (the new requester's carries the consult and the
requester's buttons for its state), the "covering for" line added to every message a
cover receives in the requester's place, the hand-over form, and the `/consult cover`
answer. Pure Block Kit from plain data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.domain.lifecycle import Status
from bot.domain.text import escape
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.render.context import RenderContext
from bot.slack.render.modals import modal
from bot.slack.render.primitives import (
    Blocks,
    actions,
    button,
    context,
    mention,
    quote,
    ref_link,
    section,
    slack_date,
    status_word,
    urgency_label,
    user_text,
)
from storage.models import Consult

Params = dict[str, Any]
Rendered = tuple[str, Blocks]
NOTE_LIMIT = 300


def covering_for(text: str, blocks: Blocks, user: str) -> Rendered:
    """A message a covering clinician receives in `user`'s place: says so first."""
    line = f":busts_in_silhouette: Covering for {mention(user)}"
    return f"(covering for {mention(user)}) {text}", [context(line), *blocks]


def _lines(consults: Sequence[Consult], ctx: RenderContext) -> str:
    return "\n".join(
        f"• {ref_link(c)} — {escape(ctx.service_name(c.service))}, "
        f"{urgency_label(c.urgency)}, {status_word(c.status)}"
        for c in consults
    )


def cover_started(c: Consult | None, p: Params, ctx: RenderContext) -> Rendered:
    """To the covering clinician: whom they cover now, and that person's open consults."""
    who = mention(p.get("for"))
    consults = ctx.load(list(p.get("ids") or []))
    listed = (
        f"\nTheir consults now:\n{_lines(consults, ctx)}"
        if consults
        else ("\nThey have no open consults right now.")
    )
    return f"You are covering for {who}", [
        section(
            f":busts_in_silhouette: You now cover for {who}: what CareLoop sends them as "
            "requester (acknowledgements, replies, questions, answers, overdue notices) "
            f"comes to you, marked _covering for_ {who}, until they end it.{listed}"
        ),
        context(
            "You may reply, close, reopen, cancel, rate and hand over on their behalf, "
            "with the buttons on those messages or `/consult <close|reopen|cancel> <ref>`."
        ),
    ]


def cover_ended(c: Consult | None, p: Params, ctx: RenderContext) -> Rendered:
    """To the clinician who covered: it is over; the requester gets their messages again."""
    who = mention(p.get("for"))
    consults = ctx.load(list(p.get("ids") or []))
    listed = f"\nTheir consults still open:\n{_lines(consults, ctx)}" if consults else ""
    return f"You no longer cover for {who}", [
        section(
            f":busts_in_silhouette: You no longer cover for {who}: their consults' messages "
            f"go to them again.{listed}"
        )
    ]


def handover_thread(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    """The thread note: the requester's side moved, by whom, with the note."""
    by = f" by {mention(p.get('by'))}" if p.get("by") not in (p.get("from"), None) else ""
    note = f": {user_text(p.get('note'), 2000)}" if p.get("note") else "."
    return f"{c.ref}: requester changed", [
        section(
            f":arrows_counterclockwise: Requester of *{c.ref}* handed over from "
            f"{mention(p.get('from'))} to {mention(p.get('to'))}{by}{note}"
        )
    ]


def requester_buttons(c: Consult) -> dict[str, Any] | None:
    """The buttons the requester (or whoever covers) has on `c` in its current state."""
    hand_over = button("Hand over", ActionId.HANDOVER, c.ref)
    if c.status == Status.ANSWERED:
        return actions(
            f"req:{c.ref}",
            button("Close", ActionId.CLOSE, c.ref, "primary"),
            button("Reopen", ActionId.REOPEN, c.ref),
            button("Helpful", ActionId.HELPFUL, c.ref),
            button("Not helpful", ActionId.NOT_HELPFUL, c.ref),
            hand_over,
        )
    if c.status == Status.WAITING:
        reply = button("Reply", ActionId.REPLY, c.ref, "primary")
        return actions(f"req:{c.ref}", reply, hand_over, button("Cancel", ActionId.CANCEL, c.ref))
    if c.status in (Status.OPEN, Status.ACKNOWLEDGED):
        return actions(f"req:{c.ref}", hand_over, button("Cancel", ActionId.CANCEL, c.ref))
    return None


def handover_received(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    """To the new requester: the consult (patient and question in the body), the note,
    and the requester's buttons for its state now."""
    note = (
        f"\nNote from {mention(p.get('by'))}:\n{quote(p.get('note'), 600)}" if p.get("note") else ""
    )
    blocks: Blocks = [
        section(
            f":arrows_counterclockwise: {mention(p.get('by'))} handed *{ref_link(c)}* over to "
            f"you: you are its requester now (was {mention(p.get('from'))}).\n"
            f"*{escape(ctx.service_name(c.service))}* · {urgency_label(c.urgency)} · "
            f"{status_word(c.status)} · owner {mention(c.assignee)} · "
            f"answer by {slack_date(c.answer_due_at)}\n"
            f"Patient: {user_text(c.patient, 300)}\nQuestion:\n{quote(c.question, 1200)}{note}"
        ),
        context("I'll tell you when it is acknowledged, asked about, answered or overdue."),
    ]
    buttons = requester_buttons(c)
    if buttons:
        blocks.append(buttons)
    return f"{c.ref} was handed over to you", blocks


def handover_sent(c: Consult, p: Params, ctx: RenderContext) -> Rendered:
    """To the previous requester: the consult is no longer theirs."""
    by = mention(p.get("by"))
    return f"{c.ref} has a new requester", [
        section(
            f":arrows_counterclockwise: {by} handed *{ref_link(c)}* over to "
            f"{mention(p.get('to'))}; its messages go to them from now on."
        )
    ]


def handover_modal(ref: str) -> dict[str, Any]:
    """Hand over the requester's side: to whom, and a note for them."""
    return modal(
        CallbackId.HANDOVER,
        "Hand over consult",
        "Hand over",
        ref,
        [
            context(f"Consult *{ref}*: your side of it moves to a colleague for good."),
            {
                "type": "input",
                "block_id": BlockId.HANDOVER_TO,
                "label": {"type": "plain_text", "text": "Hand over to"},
                "element": {"type": "users_select", "action_id": "value"},
            },
            {
                "type": "input",
                "block_id": BlockId.NOTE,
                "optional": True,
                "label": {"type": "plain_text", "text": "Note for them"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "value",
                    "multiline": True,
                    "max_length": NOTE_LIMIT,
                },
            },
        ],
    )


def cover_text(
    mine: tuple[str, Any] | None,
    covering: Sequence[tuple[str, Sequence[Consult]]],
    ctx: RenderContext,
) -> str:
    """`/consult cover`: who covers for me (and since when), and whom I cover with their
    consults."""
    if mine is None:
        lines = ["Nobody covers for you. `/consult cover @colleague` to start."]
    else:
        who, since = mine
        lines = [
            f":busts_in_silhouette: {mention(who)} covers for you since {slack_date(since)}. "
            "`/consult cover off` to end it."
        ]
    for user, consults in covering:
        listed = "\n" + _lines(consults, ctx) if consults else " (no open consults)"
        lines.append(f"You cover for {mention(user)}:{listed}")
    if not covering:
        lines.append("You cover for nobody.")
    return "\n".join(lines)
